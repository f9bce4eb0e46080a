"""No command writes over what it reads: an output that is, holds or lies inside an input is refused."""
import pytest

from benchmarks.cli import main as benchmarks_main
from edge.base.errors import UserError
from edge.base.paths import refuse_output_over_input
from edge.commands.cli import main as edge_main

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("output, relation", [("photos", "is"), ("photos/crops", "lies inside"), (".", "holds")])
def test_an_output_over_an_input_is_refused(tmp_path, monkeypatch, output, relation):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    with pytest.raises(UserError, match=f"--out {output} {relation} the input photos"):
        refuse_output_over_input(output, ["photos"])
    refuse_output_over_input("crops", ["photos"])                     # beside it is fine


def test_align_and_run_refuse_to_overwrite_their_input(tmp_path, capsys):
    photo = tmp_path / "photos" / "a" / "1.png"
    photo.parent.mkdir(parents=True)
    photo.write_bytes(b"not really a png")
    assert edge_main(["align", "--src", str(tmp_path / "photos"), "--out", str(tmp_path / "photos")]) == 2
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"video bytes")
    assert edge_main(["run", "--bundle", str(tmp_path), "--source", str(clip), "--output", str(clip)]) == 2
    assert benchmarks_main(["mosaic", "--source", str(clip), "--out", str(clip)]) == 2
    err = capsys.readouterr().err
    assert err.count("it would overwrite or mix with your files") == 3
    assert photo.read_bytes() == b"not really a png" and clip.read_bytes() == b"video bytes"


def test_enrolment_names_a_missing_photo_and_creates_nothing(tmp_path, capsys):
    gallery = tmp_path / "g.db"
    assert edge_main(["enroll", "--bundle", str(tmp_path), "--gallery", str(gallery), "--name", "ann",
                      "--consent", str(tmp_path / "no_such.jpg")]) == 2
    assert f"{tmp_path / 'no_such.jpg'} does not exist" in capsys.readouterr().err and not gallery.exists()
