"""Benchmark reports (Markdown and self-contained HTML with plots) and the noise-aware regression check."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.cli import main
from benchmarks.results import SCHEMA_VERSION
from benchmarks.timing import summarize
from edge.base.errors import UserError

pytestmark = pytest.mark.unit


def _environment(board: str) -> dict:
    return {"board": board, "cpu_model": "test CPU", "cores": 2, "versions": {}}


def _latency(board: str, name: str, backend: str, times: np.ndarray) -> dict:
    return {"schema_version": SCHEMA_VERSION, "kind": "latency", "created": "2026-11-28T00:00:00+00:00",
            "environment": _environment(board), "bundle": "b", "backend": backend, "board_default": True,
            "model": {"name": name, "task": "verify", "architecture": "a", "file": f"{name}.onnx",
                      "precision": name.rsplit(".", 1)[-1], "format": "onnx"},
            "runtime": {}, "batch": 1, "input": "random", "warmup": 1, "repeat": len(times),
            "schedule": "interleaved", "timings_ms": times.tolist(), "summary": summarize(times), "vs_fp32": None}


def _verify(board: str, name: str, scores: np.ndarray, same: np.ndarray) -> dict:
    from edge.base.metrics import roc_auc

    return {"schema_version": SCHEMA_VERSION, "kind": "verify", "created": "2026-11-28T00:00:00+00:00",
            "environment": _environment(board), "bundle": "b", "pairs": "pairs.txt", "images": "i", "folds": 2,
            "image_count": 10, "face_choice": "largest", "failed_pairs": 0,
            "model": {"name": name, "precision": "int8"}, "backend": "onnxruntime", "mirror_average": False,
            "faces_not_found": 0, "calibrated_threshold": 0.5, "embed_ms": [1.0], "embed_summary": summarize([1.0]),
            "pair_count": len(same), "same_pairs": int(same.sum()), "different_pairs": int((~same).sum()),
            "accuracy": {"mean": 0.9, "std": 0.01, "threshold": 0.5}, "roc_auc": roc_auc(scores, same),
            "eer": {"rate": 0.1, "threshold": 0.5}, "tar_at_far": {}, "accuracy_at_calibrated": 0.9,
            "balanced_accuracy_at_calibrated": 0.9,
            "scores": scores.tolist(), "same": same.tolist()}


def _write(folder: Path, results: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index, result in enumerate(results):
        (folder / f"r{index}.json").write_text(json.dumps(result))
    return folder


def _results(root: Path, board: str, slowdown: float = 1.0, auc_noise: float = 0.0) -> Path:
    rng = np.random.default_rng(1)
    same = np.arange(400) % 2 == 0
    scores = np.where(same, 0.7, 0.3) + rng.normal(0, 0.15 + auc_noise, 400)
    return _write(root / board, [
        _latency(board, "verifier.onnx.fp32", "onnxruntime", rng.normal(2.0, 0.05, 300) * slowdown),
        _latency(board, "verifier.onnx.int8", "onnxruntime", rng.normal(1.2, 0.05, 300)),
        _verify(board, "verifier.onnx.int8", scores, same)])


def test_compare_calls_a_rerun_within_noise_and_a_real_slowdown_a_regression(tmp_path, capsys):
    old = _results(tmp_path / "old", "host")
    assert main(["compare", str(old), str(_results(tmp_path / "again", "host"))]) == 0
    assert "0 regression(s)" in capsys.readouterr().out
    assert main(["compare", str(old), str(_results(tmp_path / "slow", "host", slowdown=1.15))]) == 1
    out = capsys.readouterr().out
    assert "**slower**" in out and "+15." in out and "1 regression(s)" in out
    assert main(["compare", str(old), str(_results(tmp_path / "worse", "host", auc_noise=0.25))]) == 1
    assert "**worse**" in capsys.readouterr().out


def test_compare_fails_on_a_measurement_missing_or_unreadable_on_either_side(tmp_path, capsys):
    old = _results(tmp_path / "old", "host")
    cases = {"missing in NEW": lambda folder: (folder / "r1.json").unlink(),
             "unreadable in NEW: timings_ms holds NaN": lambda folder: _edit(folder / "r0.json",
                                                                             timings_ms=[1.0, None]),
             "unreadable in NEW: no timings_ms": lambda folder: _edit(folder / "r0.json", timings_ms=[])}
    for verdict, spoil in cases.items():
        new = _results(tmp_path / verdict.split(":")[0].replace(" ", "_") / str(len(verdict)), "host")
        spoil(new)
        assert main(["compare", str(old), str(new)]) == 1, verdict
        out = capsys.readouterr().out
        assert f"**{verdict}" in out and "1 missing or unreadable on one side" in out
    assert main(["compare", str(_results(tmp_path / "fewer", "host")), str(old)]) == 0  # the same: nothing missing


def _edit(path: Path, **fields) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


def test_compare_refuses_other_schemas_empty_folders_and_nothing_in_common(tmp_path, capsys):
    old = _results(tmp_path / "old", "host")
    other = _results(tmp_path / "other", "host")
    for file in other.glob("*.json"):
        result = json.loads(file.read_text())
        result["schema_version"] = SCHEMA_VERSION + 1
        file.write_text(json.dumps(result))
    (tmp_path / "empty").mkdir()
    cases = [(other, "different schema versions"), (tmp_path / "empty", "holds no benchmark results"),
             (_results(tmp_path / "elsewhere", "rpi5"), "no measurement appears in both")]
    for new, message in cases:
        assert main(["compare", str(old), str(new)]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_report_writes_markdown_and_a_self_contained_page_per_board_and_an_index(tmp_path, capsys):
    root = tmp_path / "results"
    _results(root, "host")
    _results(root, "rpi5", slowdown=3.0)
    assert main(["report", str(root)]) == 0
    for board in ("host", "rpi5"):
        page = (root / board / "report.html").read_text()
        assert page.count("src=\"data:image/png;base64,") == 2           # latency boxes, latency vs accuracy
        assert "<table>" in page and "http" not in page.split("</style>")[1]   # nothing fetched from anywhere
        markdown = (root / board / "report.md").read_text()
        assert markdown.startswith(f"# Benchmarks: {board}") and "p50 95 % interval" in markdown
        assert "| verify | verifier.onnx.int8.onnx | int8 | onnxruntime |" in markdown   # the profile's choice
    assert 'src="data:image/png;base64,' in (root / "index.html").read_text()
    readme = (root / "README.md").read_text()                  # the results folder's page, for the repository
    assert readme.startswith("# Benchmark results") and "## Board: host" in readme and "## Board: rpi5" in readme
    assert not list(root.rglob("*.tmp"))
    (tmp_path / "nothing").mkdir()
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "holds no benchmark results" in capsys.readouterr().err


def test_the_environment_records_the_bundles_manifest_and_the_command(tmp_path, monkeypatch):
    import hashlib
    import sys

    from benchmarks.environment import ENVIRONMENT_KEYS, collect_environment

    (tmp_path / "manifest.json").write_text('{"board": "host"}')
    monkeypatch.setattr(sys, "argv", ["benchmarks", "latency", "--bundle", str(tmp_path)])
    environment = collect_environment("host", 2, tmp_path)
    assert set(ENVIRONMENT_KEYS) <= set(environment)
    assert environment["manifest_sha256"] == hashlib.sha256(b'{"board": "host"}').hexdigest()
    assert environment["command"] == f"python -m benchmarks latency --bundle {tmp_path}"
    assert collect_environment("host", 2)["manifest_sha256"] is None


def test_a_board_backend_missing_here_is_a_skipped_row_that_says_why(verify_bundle):
    from benchmarks.environment import collect_environment
    from benchmarks.latency import skipped_rows
    from benchmarks.render import latency_table
    from edge.runtime.boards import load_board
    from edge.runtime.manifest import read_manifest

    manifest = read_manifest(verify_bundle)
    rows = skipped_rows(manifest, load_board("jetson-orin-nano"), None, collect_environment("host", 2), "b")
    onnx_files = [e for e in manifest.models if e.format == "onnx"]
    assert len(rows) == len(onnx_files) and {r["backend"] for r in rows} == {"tensorrt"}
    assert all(r["summary"]["p50"] is None and "does not run on this machine" in r["skipped"] for r in rows)
    assert "skipped: tensorrt does not run on this machine" in latency_table(rows)
    assert skipped_rows(manifest, load_board("host"), None, collect_environment("host", 2), "b") == []


def test_peers_run_beside_ours_on_the_same_frames_and_a_missing_one_is_skipped_with_why(verify_bundle, monkeypatch):
    import benchmarks.peers as peers
    from benchmarks.render import peers_table

    source = "synthetic://kiosk?seeds=3&frames_per_person=6&gap_frames=0"
    board, result = peers.run_peers(verify_bundle, source, frames=4, warmup=1)
    assert board == "host" and result["kind"] == "peers" and result["frames"] == 4
    assert {"ours", "opencv-haar"} <= set(result["peers"]) and all(p["frames"] == 4 for p in result["peers"].values())
    assert result["peers"]["ours"]["frames_with_face"] >= 1

    def not_installed():
        raise UserError("the dlib reference needs dlib (No module named 'dlib'): pip install dlib-bin")

    monkeypatch.setattr(peers, "_dlib", not_installed)
    _, result = peers.run_peers(verify_bundle, source, frames=2, warmup=1)
    assert "dlib" not in result["peers"] and "No module named 'dlib'" in result["skipped"]["dlib"]
    assert "| dlib | skipped: the dlib reference needs dlib" in peers_table([result])


def test_the_committed_host_results_render_and_their_readme_is_what_report_renders(tmp_path):
    import shutil

    committed = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
    copy = tmp_path / "results"
    shutil.copytree(committed, copy)
    assert main(["report", str(copy)]) == 0
    assert (copy / "README.md").read_text() == (committed / "README.md").read_text(), \
        "benchmarks/results/README.md is stale: run python -m benchmarks report benchmarks/results"
    assert (copy / "host" / "report.md").read_text() == (committed / "host" / "report.md").read_text()
    kinds = {json.loads(p.read_text())["kind"] for p in (copy / "host").glob("*.json")}
    assert kinds == {"latency", "pipeline", "verify", "detect", "peers"}


def test_the_pipeline_records_the_socs_temperature_through_the_run(verify_bundle, monkeypatch):
    import itertools

    import benchmarks.pipeline_bench as bench
    from benchmarks.render import pipeline_table

    heat = itertools.count(50)
    monkeypatch.setattr(bench, "soc_temperature", lambda: float(next(heat)))    # a board warming up a degree a look
    monkeypatch.setattr(bench, "pi_throttled", lambda: "0x50000")
    source = "synthetic://kiosk?seeds=3&frames_per_person=40"
    _, result = bench.run_pipeline(bench.PipelineOptions(verify_bundle, source, frames=35, warmup=0,
                                                         modes=("tracked",)))
    assert result["thermal"]["readings_c"][0] == 50.0 and result["thermal"]["max_c"] > 50.0
    table = pipeline_table([result])
    assert "SoC 50 C at the start" in table and "throttling flags 0x50000" in table


def test_a_bundle_for_another_board_is_measured_with_a_warning_and_recorded(capsys):
    import platform

    from benchmarks.environment import collect_environment

    other = "rpi5" if platform.machine() != "aarch64" else "host"
    environment = collect_environment(other, 2)
    assert environment["bundle_for_another_board"].startswith(f"the bundle is for {other}")
    assert "measured anyway and recorded" in capsys.readouterr().err
    if platform.machine() == "x86_64":                          # the host config describes this machine
        assert collect_environment("host", 2)["bundle_for_another_board"] is None


def test_the_liveness_report_counts_visits_live_by_a_check_standing_in_for_another():
    from benchmarks.render import liveness_table
    from edge.liveness.checks import CheckResult
    from edge.liveness.gate import fuse

    unmoved = CheckResult("insufficient", 0.004, {"unmoved": True}, unmoved=True)
    near = CheckResult("insufficient", 0.01, {"near": True}, near=True)
    sure = CheckResult("live", 0.999, {"sure": True, "alone": False}, sure=True)
    alone = CheckResult("live", 0.999, {"sure": True, "alone": True}, alone=True, sure=True)
    still = fuse({"planar": unmoved, "texture": alone}).record()
    close = fuse({"planar": near, "texture": sure}).record()
    turned = fuse({"planar": CheckResult("live", 0.02), "texture": CheckResult("live", 0.9)}).record()
    unsure = fuse({"planar": unmoved, "texture": CheckResult("live", 0.9)}).record()
    twice = CheckResult("insufficient", 0.01, {"near": True, "near_twice": True}, near=True, near_twice=True)
    again = fuse({"planar": twice, "texture": CheckResult("live", 0.9)}).record()
    assert [v.get("stood_in") for v in (still, close, turned, unsure, again)] == ["unmoved", "near", None, None,
                                                                                 "near_twice"]
    fused = {"apcer": {"print": 0.0096}, "bpcer": 0.3333, "attack_clips": {"print": 208}, "live_visits": 6,
             "someone_else": {"attack_clips": {"print": 0}, "live_visits": 0}}
    result = {"kind": "liveness", "attacks": "clips", "liveness_ms_per_look": 4.9, "checks": {},
              "fused": {**fused, "without_movement": {"attack_clips": {"print": 1}, "live_visits": 2},
                        "near_threshold": {"attack_clips": {"print": 0}, "live_visits": 3},
                        "near_twice": {"attack_clips": {"print": 1}, "live_visits": 4}}}
    table = liveness_table([result])
    assert "live without movement (clips / live visits)" in table and "live near planar's threshold" in table
    assert "live twice near planar's threshold" in table
    assert table.splitlines()[-1].endswith("| 1 / 2 | 0 / 3 | 1 / 4 |")
    older = liveness_table([{**result, "fused": fused}])            # a result from before the counts
    assert older.splitlines()[-1].endswith("| - | - | - |")


def test_the_liveness_table_gives_each_check_its_share_of_the_ms_per_look():
    from benchmarks.render import liveness_table

    rates = {"apcer": {"print": 0.0}, "bpcer": 0.5}
    result = {"kind": "liveness", "attacks": "clips", "liveness_ms_per_look": 4.65,
              "checks": {"planar": rates, "texture": rates}, "fused": {**rates, "attack_clips": {"print": 208},
                                                                     "live_visits": 6},
              "liveness_ms_per_look_by_check": {"planar": 2.3, "texture": 1.6}, "liveness_ms_per_look_kiosk": 0.75}
    rows = liveness_table([result]).splitlines()[2:]
    assert [row.split(" | ")[6] for row in rows] == ["4.65", "2.30", "1.60"]
    older = {key: value for key, value in result.items() if key != "liveness_ms_per_look_by_check"}
    assert [row.split(" | ")[6] for row in liveness_table([older]).splitlines()[2:]] == ["4.65", "-", "-"]


def test_the_liveness_report_splits_the_live_visits_by_source():
    from benchmarks.render import liveness_tables

    fused = {"apcer": {"print": 0.0}, "bpcer": 0.25, "attack_clips": {"print": 208}, "live_visits": 8,
             "live_sources": {"stage.mp4": {"live_visits": 6, "rejected": 2, "size": [640, 360], "fps": 29.97},
                              "door.mp4": {"live_visits": 2, "rejected": 0}}}     # a source from before its shape
    result = {"kind": "liveness", "attacks": "clips", "liveness_ms_per_look": 4.9, "checks": {}, "fused": fused}
    sources = liveness_tables([result]).split("\n\n")[1].splitlines()
    assert sources[0] == "| attack clips | live source | size | fps | live visits | refused (fused) | BPCER |"
    assert sources[2:] == ["| clips | stage.mp4 | 640x360 | 29.97 | 6 | 2 | 0.333 |",
                           "| clips | door.mp4 | - | - | 2 | 0 | 0.000 |"]
    older = {**result, "fused": {k: v for k, v in fused.items() if k != "live_sources"}}   # from before the split
    assert "live source" not in liveness_tables([older])


def test_a_liveness_sweep_is_a_table_and_a_plot_of_its_settings_beside_the_shipped_ones():
    from benchmarks.render import liveness_tables
    from benchmarks.report_html import liveness_plot

    def rates(apcer, bpcer):
        return {"apcer": {"print": apcer, "replay": 0.0}, "bpcer": bpcer, "attack_clips": {"print": 208, "replay": 209},
                "live_visits": 6, "someone_else": {"attack_clips": {}, "live_visits": 0},
                "without_movement": {"attack_clips": {}, "live_visits": 2}}
    result = {"kind": "liveness", "attacks": "clips", "liveness_ms_per_look": 4.9, "checks": {},
              "fused": rates(0.0096, 0.3333), "liveness_settings": {"planar_parallax": 0.015, "still_looks": 6},
              "sweep": [{"settings": {"planar_parallax": 0.01}, **rates(0.0288, 0.1667)},
                        {"settings": {"planar_parallax": 0.02}, **rates(0.0048, 0.5)}]}
    sweep = liveness_tables([result]).split("\n\n")[1].splitlines()
    assert "liveness settings" in sweep[0] and len(sweep) == 2 + 3
    assert sweep[2] == "| clips | as shipped: planar_parallax 0.015 | 0.010 | 0.000 | - | 0.333 of 6 | 0 / 2 | - | - |"
    assert sweep[3].startswith("| clips | planar_parallax 0.01 | 0.029 |") and "0.167 of 6" in sweep[3]
    unswept = {key: value for key, value in result.items() if key != "sweep"}
    assert "\n\n" not in liveness_tables([unswept]) and liveness_plot([unswept]) is None   # and older results
    assert base64.b64decode(liveness_plot([result])).startswith(b"\x89PNG")
    other_clips = {**result, "attacks": "other_clips", "fused": rates(0.0, 0.5)}      # two runs in one folder
    assert liveness_plot([result, other_clips]) not in (None, liveness_plot([result]))


def test_a_live_visit_counts_with_four_looks_or_a_verdict_settled_in_fewer():
    from benchmarks.liveness_bench import is_live_visit

    def visit(verdict, looks):
        return {"verdict": verdict, "looks": looks, "checks": {}}
    assert is_live_visit(visit("insufficient", 4), 40) and not is_live_visit(visit("insufficient", 3), 200)
    assert is_live_visit(visit("live", 3), 60) and is_live_visit(visit("attack", 2), 60)   # judged: no more looks
    assert not is_live_visit(visit("live", 8), 39)                                        # too small a face


def test_a_sweep_measures_every_combination_of_its_settings_and_nothing_without_one():
    from benchmarks.liveness_bench import sweep_points

    assert sweep_points(()) == []
    assert sweep_points((("planar_parallax", (0.01, 0.02)), ("still_looks", (0, 6)))) == [
        {"planar_parallax": 0.01, "still_looks": 0}, {"planar_parallax": 0.01, "still_looks": 6},
        {"planar_parallax": 0.02, "still_looks": 0}, {"planar_parallax": 0.02, "still_looks": 6}]
    with pytest.raises(UserError, match="--sweep names still_looks more than once"):
        sweep_points((("still_looks", (0,)), ("still_looks", (6,))))
