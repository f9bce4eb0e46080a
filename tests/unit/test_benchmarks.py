"""The thin benchmarks: timing summary, pairs files, image lookup, result JSON, report, CLI errors."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from benchmarks.cli import main
from benchmarks.environment import ENVIRONMENT_KEYS, collect_environment
from benchmarks.pairs import Pair, find_image, make_pairs, parse_pairs, write_pairs
from benchmarks.timing import summarize
from edge.base.errors import UserError
from edge.base.timing import time_interleaved

pytestmark = pytest.mark.unit


def test_summary_of_known_numbers():
    summary = summarize(list(range(1, 101)))       # 1..100 ms
    assert summary["p50"] == pytest.approx(50.5)
    assert summary["p90"] == pytest.approx(90.1)
    assert summary["p99"] == pytest.approx(99.01)
    assert summary["mean"] == pytest.approx(50.5)
    assert summary["throughput_per_s"] == pytest.approx(1000 / 50.5)
    assert summarize([])["p50"] is None


def test_interleaved_timing_runs_every_call_per_round():
    calls = []
    times = time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, warmup=2, repeat=3)
    assert calls == ["a", "b"] * 5
    assert [len(v) for v in times.values()] == [3, 3]


def _identity_folders(root, names, count, lfw_style):
    for name in names:
        (root / name).mkdir(parents=True)
        for n in range(1, count + 1):
            stem = f"{name}_{n:04d}" if lfw_style else str(n)
            cv2.imwrite(str(root / name / f"{stem}.png"), np.zeros((8, 8, 3), np.uint8))


def test_pairs_round_trip_balanced_with_disjoint_folds(tmp_path):
    _identity_folders(tmp_path / "img", [f"s{i}" for i in range(1, 21)], 5, lfw_style=False)
    made, disjoint = make_pairs(tmp_path / "img", folds=5, per_fold=6, seed=3)
    assert disjoint
    parsed = parse_pairs(write_pairs(tmp_path / "pairs.txt", made))
    assert parsed == made
    assert make_pairs(tmp_path / "img", folds=5, per_fold=6, seed=3)[0] == made   # deterministic
    people_per_fold = []
    for fold in range(5):
        pairs = [p for p in parsed.pairs if p.fold == fold]
        assert [p.same for p in pairs] == [True] * 6 + [False] * 6
        assert len(set(pairs)) == 12
        people_per_fold.append({p.name1 for p in pairs} | {p.name2 for p in pairs})
    for i in range(5):
        for j in range(i + 1, 5):
            assert not people_per_fold[i] & people_per_fold[j]
    for pair in parsed.pairs:
        find_image(tmp_path / "img", pair.name1, pair.n1)
        find_image(tmp_path / "img", pair.name2, pair.n2)


def test_parse_lfw_sample_with_single_number_header(tmp_path):
    same = "\n".join(f"Abel_Pacheco\t1\t{n}" for n in range(2, 4))
    different = "\n".join(f"Abdel_Madi_Shabneh\t1\tDean_Barker\t{n}" for n in range(1, 3))
    (tmp_path / "pairs.txt").write_text("2\n" + ("\n".join([same, different]) + "\n") * 10)
    parsed = parse_pairs(tmp_path / "pairs.txt")
    assert (parsed.folds, parsed.per_fold, len(parsed.pairs)) == (10, 2, 40)
    assert parsed.pairs[0] == Pair("Abel_Pacheco", 1, "Abel_Pacheco", 2, 0)
    assert parsed.pairs[2] == Pair("Abdel_Madi_Shabneh", 1, "Dean_Barker", 1, 0)
    assert parsed.pairs[-1].fold == 9 and not parsed.pairs[-1].same
    (tmp_path / "bad.txt").write_text("1 1\nA 1 B 2\nA 1 B 2\n")
    with pytest.raises(UserError, match="line 2"):
        parse_pairs(tmp_path / "bad.txt")


def test_image_lookup_both_naming_styles(tmp_path):
    _identity_folders(tmp_path, ["George_Bush"], 2, lfw_style=True)
    _identity_folders(tmp_path, ["s1"], 2, lfw_style=False)
    assert find_image(tmp_path, "George_Bush", 2).name == "George_Bush_0002.png"
    assert find_image(tmp_path, "s1", 1).name == "1.png"
    with pytest.raises(UserError, match="image 7 of 's1'"):
        find_image(tmp_path, "s1", 7)


def test_environment_has_required_keys():
    environment = collect_environment("host", 2)
    assert set(ENVIRONMENT_KEYS) <= set(environment)
    assert set(environment["versions"]) == {"numpy", "opencv", "onnxruntime", "ai-edge-litert", "tensorrt"}
    assert environment["board"] == "host" and environment["threads"] == 2


def test_latency_writes_json_and_report(detector_bundle, tmp_path, capsys):
    bundle = detector_bundle()
    results = tmp_path / "results"
    code = main(["latency", "--bundle", str(bundle), "--results", str(results), "--warmup", "1", "--repeat", "5"])
    assert code == 0
    written = json.loads((results / "host" / "latency-detector.blazeface_short-tflite.json").read_text())
    assert written["schema_version"] == 1 and written["kind"] == "latency"
    assert set(ENVIRONMENT_KEYS) <= set(written["environment"])
    assert len(written["timings_ms"]) == 5 and written["summary"]["p50"] > 0
    report = (results / "host" / "report.md").read_text()
    assert "| detect | detector.blazeface_short | fp32 | tflite |" in report
    assert "detector.blazeface_short" in capsys.readouterr().out


def test_latency_compares_with_fp32_and_verify_runs(verify_bundle, tmp_path):
    results = tmp_path / "results"
    assert main(["latency", "--bundle", str(verify_bundle), "--results", str(results), "--warmup", "0",
                 "--repeat", "3", "--backend", "onnxruntime"]) == 0
    int8 = json.loads((results / "host" / "latency-verifier.onnx.int8-onnxruntime.json").read_text())
    assert int8["vs_fp32"]["reference"] == "verifier.onnx.fp32"
    faces = tmp_path / "faces"
    for name, colour in (("a", 60), ("b", 200)):
        (faces / name).mkdir(parents=True)
        for n in (1, 2):
            cv2.imwrite(str(faces / name / f"{n}.png"), np.full((64, 64, 3), colour + n, np.uint8))
    (tmp_path / "pairs.txt").write_text("2 1\na 1 2\na 1 b 2\nb 1 2\nb 1 a 2\n")
    # flat images hold no face: every pair fails, which must be counted rather than crash
    assert main(["verify", "--bundle", str(verify_bundle), "--pairs", str(tmp_path / "pairs.txt"),
                 "--images", str(faces), "--results", str(results)]) == 0
    verified = json.loads((results / "host" / "verify-pairs-verifier.onnx.int8-onnxruntime.json").read_text())
    assert verified["faces_not_found"] == 4 and verified["failed_pairs"] == 4
    report = (results / "host" / "report.md").read_text()
    assert "Model latency" in report and "Verification accuracy" in report


def test_missing_bundle_exits_2(tmp_path, capsys):
    assert main(["latency", "--bundle", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_missing_pair_image_is_named(verify_bundle, tmp_path, capsys):
    (tmp_path / "pairs.txt").write_text("2 1\nx 1 2\nx 1 y 2\nx 1 2\nx 1 y 2\n")
    (tmp_path / "img").mkdir()
    assert main(["verify", "--bundle", str(verify_bundle), "--pairs", str(tmp_path / "pairs.txt"),
                 "--images", str(tmp_path / "img")]) == 2
    assert "'x'" in capsys.readouterr().err


def test_pipeline_benchmark_runs_tracked_and_per_frame_side_by_side(verify_bundle, tmp_path):
    results = tmp_path / "results"
    assert main(["pipeline", "--bundle", str(verify_bundle), "--results", str(results), "--frames", "40",
                 "--warmup", "2", "--source", "synthetic://kiosk?seeds=1,2&frames_per_person=16&gap_frames=4"]) == 0
    (path,) = (results / "host").glob("pipeline-*.json")
    assert path.name.endswith("-verifier.onnx.int8-onnxruntime-2threads.json")   # another file or threads: its own
    result = json.loads(path.read_text())
    tracked, per_frame = result["modes"]["tracked"], result["modes"]["per_frame"]
    assert tracked["describe"]["liveness"] == ["planar"]                          # the kiosk as edge run runs it
    assert {"read", "detect", "liveness", "total"} <= set(tracked["stages"]) and "read" in per_frame["stages"]
    assert tracked["frames"] == per_frame["frames"] == 38
    assert tracked["visits"] == 2 and sum(tracked["decisions"].values()) == 2      # one decision per visitor
    assert per_frame["decisions"]["faces_decided"] >= 20                             # every face of every frame
    assert tracked["frame_summary"]["p99"] is not None and tracked["fps"] > 0
    assert result["comparison"]["fps_ratio_tracked_over_per_frame"] > 0
    assert result["comparison"]["visit_agreement"]["compared"] == 2
    report = (results / "host" / "report.md").read_text()
    assert "tracked runs" in report and "| source | mode | threads | read | detect |" in report


def test_pipeline_benchmark_refuses_an_unknown_mode(verify_bundle, tmp_path, capsys):
    assert main(["pipeline", "--bundle", str(verify_bundle), "--modes", "tracked,fast",
                 "--source", "synthetic://kiosk?seeds=1", "--results", str(tmp_path)]) == 2
    assert "choose from tracked, per_frame" in capsys.readouterr().err


def _grey_clip(path, frames: int, step: int):
    """A 64x48 clip at 30 fps whose frame i is grey at ``step * i``."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (64, 48))
    for index in range(frames):
        writer.write(np.full((48, 64, 3), step * index, np.uint8))
    writer.release()
    return path


def test_mosaic_tiles_a_small_video_with_time_offsets(tmp_path, capsys):
    small = _grey_clip(tmp_path / "small.mp4", 8, 30)
    out = tmp_path / "big.mp4"
    assert main(["mosaic", "--source", str(small), "--out", str(out), "--grid", "2x2", "--frames", "5"]) == 0
    capture = cv2.VideoCapture(str(out))
    frames = []
    while (read := capture.read())[0]:
        frames.append(read[1])
    assert len(frames) == 5 and frames[0].shape == (96, 128, 3)
    corners = [int(frames[0][y, x, 0]) for y, x in ((10, 10), (10, 100), (70, 10), (70, 100))]
    assert corners == sorted(corners) and corners[3] - corners[0] > 120            # copies start 0, 2, 4, 6 frames in
    assert main(["mosaic", "--source", str(small), "--out", str(small)]) == 2
    assert main(["mosaic", "--source", str(small), "--out", str(out), "--grid", "3by3"]) == 2
    assert "--grid '3by3': write two positive numbers as AxB" in capsys.readouterr().err
    resized = tmp_path / "resized.mp4"
    assert main(["mosaic", "--source", str(small), "--out", str(resized), "--grid", "2x2", "--frames", "2",
                 "--size", "192x144"]) == 0
    capture = cv2.VideoCapture(str(resized))
    assert capture.read()[1].shape == (144, 192, 3)
    capture.release()
    assert main(["mosaic", "--source", str(small), "--out", str(tmp_path / "bad.mp4"), "--size", "0x10"]) == 2
    assert "--size '0x10'" in capsys.readouterr().err


def test_mosaic_keeps_one_frame_in_every_n_at_the_rate_that_leaves(tmp_path):
    small = _grey_clip(tmp_path / "small.mp4", 9, 25)
    slower = tmp_path / "slower.mp4"
    assert main(["mosaic", "--source", str(small), "--out", str(slower), "--grid", "1x1", "--every", "3",
                 "--size", "32x24"]) == 0
    capture = cv2.VideoCapture(str(slower))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0, abs=0.01)
    frames = []
    while (read := capture.read())[0]:
        frames.append(read[1])
    capture.release()
    assert len(frames) == 3 and frames[0].shape == (24, 32, 3)
    assert [int(round(frame.mean() / 25)) for frame in frames] == [0, 3, 6]         # source frames 0, 3 and 6


def test_a_measured_profile_replaces_the_boards_default_precisions_and_says_so(verify_bundle, tmp_path,
                                                                               monkeypatch, capsys):
    import json

    from edge.base.errors import UserError
    from edge.runtime.board_profile import read_profile
    from edge.runtime.boards import load_board
    from edge.runtime.manifest import read_manifest
    from edge.runtime.models import choose_model

    monkeypatch.setenv("EDGE_FACE_HOME", str(tmp_path / "home"))
    facts = load_board("host")
    assert main(["latency", "--bundle", str(verify_bundle), "--results", str(tmp_path / "r"), "--warmup", "0",
                 "--repeat", "3", "--write_profile"]) == 0
    written = tmp_path / "home" / "profiles" / "host.json"
    assert f"wrote the board profile {written}: compile and the runtime" in capsys.readouterr().out
    profile = json.loads(written.read_text())
    verify = profile["tasks"]["verify"]
    assert verify["median_ms"] == min(verify["measured"].values()) and len(verify["measured"]) == 2
    board = load_board("host")
    assert board == facts, "load_board reads the YAML and nothing else"
    measured = read_profile(board)
    assert measured.precisions["verify"] == verify["precision"] and measured.describe().startswith("measured on")
    assert measured.backends == {task: c["backend"] for task, c in profile["tasks"].items()}
    manifest = read_manifest(verify_bundle)
    choice = choose_model(manifest, board, "verify", profile=measured)
    assert choice.reason.startswith("measured default") and choice.backend == verify["backend"]
    assert choose_model(manifest, board, "verify").reason.startswith("board default"), "no profile: the facts"
    written.write_text("{not json")
    with pytest.raises(UserError, match="board profile .*host.json is malformed"):
        read_profile(board)
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    written.unlink()
    assert main(["latency", "--bundle", str(verify_bundle), "--results", str(tmp_path / "r"), "--warmup", "0",
                 "--repeat", "3", "--write_profile"]) == 2
    assert "on the board itself; this machine is aarch64" in capsys.readouterr().err


def test_mirror_cost_needs_a_verifier_that_mirrors(verify_bundle, capsys):
    from benchmarks.mirror_cost import main as mirror_cost

    assert mirror_cost(["--bundle", str(verify_bundle), "--repeat", "5"]) == 2
    assert "is not embedded with its mirror image" in capsys.readouterr().err
