"""Hostile and mistaken inputs end in one line, and never in a traceback, a hang or a file written over."""
import os
import zipfile

import numpy as np
import pytest

from edge.base.errors import UserError
from edge.base.imageio import read_image
from edge.base.interrupts import check_file_target, check_folder_target, make_folder
from edge.commands.cli import main

pytestmark = pytest.mark.unit


def test_a_fifo_among_photos_is_skipped_not_waited_on(tmp_path):
    fifo = tmp_path / "photo.png"
    os.mkfifo(fifo)                            # opening it for reading would block until a writer came
    assert read_image(fifo) is None and read_image(tmp_path / "missing.png") is None


def test_output_places_are_checked_before_any_work(tmp_path):
    (tmp_path / "file").write_text("mine")
    (tmp_path / "folder").mkdir()
    with pytest.raises(UserError, match="folder is a folder; give the file to write"):
        check_file_target(tmp_path / "folder")
    with pytest.raises(UserError, match="file is a file, not a folder"):
        check_folder_target(tmp_path / "file" / "bundles")
    with pytest.raises(UserError, match="file is a file, not a folder"):
        make_folder(tmp_path / "file")
    assert (tmp_path / "file").read_text() == "mine"
    assert make_folder(tmp_path / "new" / "deep").is_dir()


def test_trainer_import_into_a_folder_is_refused(tmp_path, capsys):
    from trainer.cli import main as trainer_main

    assert trainer_main(["import", "dlib_resnet", "--out", str(tmp_path)]) == 2
    assert "is a folder; give the file to write" in capsys.readouterr().err


def test_trainer_import_never_writes_over_its_source_or_another_checkpoint(tmp_path, capsys):
    from trainer.cli import main as trainer_main

    source, other = tmp_path / "2.7_80x80_MiniFASNetV2.pth", tmp_path / "texture.pt"
    source.write_bytes(b"the publisher's weights")
    other.write_bytes(b"another model")
    assert trainer_main(["import", "minifasnet", str(source), "--out", str(source)]) == 2
    assert "is the input" in capsys.readouterr().err
    assert trainer_main(["import", "minifasnet", str(source), "--out", str(other)]) == 2
    assert "exists (another model's checkpoint?)" in capsys.readouterr().err
    assert source.read_bytes() == b"the publisher's weights" and other.read_bytes() == b"another model"
    # given up with --overwrite, the existing checkpoint is replaced only by a source that imports
    assert trainer_main(["import", "minifasnet", str(source), "--out", str(other), "--overwrite"]) == 2
    assert "is not a MiniFASNet state dict" in capsys.readouterr().err
    assert other.read_bytes() == b"another model"


def test_a_truncated_golden_file_is_a_reason_not_a_traceback(verify_bundle, tmp_path, capsys):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(verify_bundle, copy)
    golden = copy / "golden.npz"
    np.savez(golden, reference=np.zeros((4, 8), np.float32))
    assert zipfile.is_zipfile(golden)
    with open(golden, "r+b") as handle:                 # a copy cut short
        handle.truncate(100)
    assert main(["bundle", "check", str(copy), "--allow_unsigned"]) == 2
    assert "golden.npz cannot be read" in capsys.readouterr().err


def test_an_export_goes_into_a_folder_made_for_it(tmp_path, capsys):
    from edge.gallery.sqlite import SqliteGallery

    gallery = SqliteGallery(tmp_path / "g.db", create=True)
    gallery.people.enroll("ann", np.eye(1, 4, dtype=np.float32), "model", ["a.png"], consent="yes")
    gallery.close()
    out = tmp_path / "exports" / "2026" / "ann.json"
    assert main(["gallery", "--gallery", str(tmp_path / "g.db"), "--export", "ann", "--out", str(out)]) == 0
    assert out.stat().st_mode & 0o777 == 0o600 and '"name": "ann"' in out.read_text()


def test_a_recording_never_writes_over_a_file(tmp_path):
    from edge.faces.annotate import VideoWriter

    (tmp_path / "old.mp4").write_bytes(b"last week's recording")
    with pytest.raises(UserError, match="old.mp4 exists; choose a new file"):
        VideoWriter(tmp_path / "old.mp4")


def test_an_unknown_threshold_above_the_match_threshold_is_refused(verify_bundle, tmp_path, capsys):
    from edge.gallery.sqlite import SqliteGallery

    SqliteGallery(tmp_path / "g.db", create=True).close()
    assert main(["run", "--bundle", str(verify_bundle), "--gallery", str(tmp_path / "g.db"), "--source",
                 "synthetic://kiosk?seeds=1&frames_per_person=2", "--threshold", "0.5",
                 "--unknown_threshold", "0.7"]) == 2
    assert "--unknown_threshold 0.7 is above the match threshold 0.5000" in capsys.readouterr().err


def test_a_person_is_enrolled_from_frames_of_a_video(verify_bundle, tmp_path, capsys):
    import cv2
    from synthetic_faces.dataset import write_identity_folders

    from edge.gallery.sqlite import SqliteGallery

    write_identity_folders(tmp_path / "photos", 1, 3, seed=500)
    frames = [cv2.imread(str(p)) for p in sorted((tmp_path / "photos").rglob("*.png"))]
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, frames[0].shape[1::-1])
    for frame in frames:
        writer.write(frame)
    writer.release()
    gallery = tmp_path / "g.db"
    assert main(["enroll", "--bundle", str(verify_bundle), "--gallery", str(gallery), "--name", "ann", "--consent",
                 f"{clip}#0", f"{clip}#2", f"{clip}#9"]) == 0
    assert "clip.avi#9 (unreadable)" in capsys.readouterr().out
    sources = [row[0] for row in SqliteGallery(gallery)._db.execute("SELECT source FROM templates")]
    assert sources == [f"{clip}#0", f"{clip}#2"]


def test_a_data_folder_that_is_a_file_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "home").write_text("not a folder")
    monkeypatch.setenv("EDGE_FACE_HOME", str(tmp_path / "home"))
    assert main(["gallery"]) == 2
    assert "home (EDGE_FACE_HOME, the kiosk's data folder) is a file, not a folder" in capsys.readouterr().err


def test_a_door_without_liveness_is_refused_unless_no_liveness_says_so(verify_bundle, tmp_path, capsys):
    import json

    from edge.gallery.sqlite import SqliteGallery

    SqliteGallery(tmp_path / "g.db", create=True).close()
    secret = tmp_path / "secret"
    secret.write_text("a shared secret of enough bytes")
    secret.chmod(0o600)
    run = ["run", "--bundle", str(verify_bundle), "--gallery", str(tmp_path / "g.db"),
           "--source", "synthetic://kiosk?seeds=1&frames_per_person=12",
           "--webhook", "http://127.0.0.1:9/door", "--webhook_secret_file", str(secret)]
    assert main([*run, "--liveness", "none"]) == 2
    said = capsys.readouterr().err.strip().splitlines()       # the bundle's signature checked, then the refusal
    assert said[0].startswith("bundle: ") and len(said) == 2
    assert said[1].startswith("error: the door has actions but no liveness check runs")
    assert main([*run, "--no_liveness", "--liveness", "planar"]) == 2
    assert "cannot be given with --liveness or --challenge" in capsys.readouterr().err
    assert main([*run, "--liveness", "planer"]) == 2
    assert "unknown liveness check 'planer' (did you mean 'planar'?)" in capsys.readouterr().err
    assert main([*run, "--no_liveness"]) == 0
    captured = capsys.readouterr()
    assert "liveness is off (--no_liveness)" in captured.err and "opens the door" in captured.err
    assert all(json.loads(line)["liveness"]["verdict"] == "off" for line in captured.out.splitlines())
    assert main(run) == 0                                 # the board's planar check: every decision carries it
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines and all(set(line["liveness"]["checks"]) == {"planar"} for line in lines)


def test_a_live_video_that_cannot_be_read_is_refused_before_the_attack_clips_run(tmp_path, capsys):
    """Each --live source is opened before any model loads (the bundle here does not even exist), not after every
    attack clip has run."""
    from benchmarks.cli import main as benchmarks_main

    (tmp_path / "attacks" / "print").mkdir(parents=True)
    (tmp_path / "attacks" / "print" / "clip.mp4").write_bytes(b"")
    (tmp_path / "junk.mp4").write_text("not a video")
    for live, said in ((tmp_path / "missing.mp4", "is neither an existing file or folder nor a URI"),
                       (tmp_path / "junk.mp4", "OpenCV cannot decode video")):
        assert benchmarks_main(["liveness", "--bundle", str(tmp_path / "no_bundle"), "--attacks",
                                str(tmp_path / "attacks"), "--live", str(live), "--results",
                                str(tmp_path / "results")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and said in err[-1] and str(live) in err[-1]
    assert not (tmp_path / "results").exists()
