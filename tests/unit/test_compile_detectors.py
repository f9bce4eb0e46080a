"""ONNX detector files converted from the packaged BlazeFace TFLite files (compile.detectors): the conversion's
fidelity, the whole-detector gate, the CLI, and the runtime running them."""
from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from compile import cli
from compile.calibration import load_calibration_set
from compile.detectors import BUDGETS, DetectorPhotos, TfliteGraph, agreement, compile_detectors
from compile.exporters import ExportFailed
from compile.quantize import output_heads
from edge.base.errors import UserError
from edge.faces.detect import Detection, build_detector, letterbox
from edge.runtime.backends.base import BackendOptions
from edge.runtime.boards import Artifact, load_board
from edge.runtime.manifest import read_manifest
from edge.runtime.models import choose_model, load_model
from edge.runtime.packaged import VENDOR_MODELS, packaged_model_path
from tests.unit.test_compile import _face, _patch_sources, faces_dir, needs_detector  # noqa: F401 (fixture)

pytestmark = [pytest.mark.unit, needs_detector]


def _tflite_outputs(name: str, image: np.ndarray) -> dict[str, np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(packaged_model_path(name)))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image)
    interpreter.invoke()
    return {d["name"]: interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}


@pytest.mark.parametrize("name", sorted(VENDOR_MODELS))
def test_the_converted_graph_computes_what_the_packaged_file_does(name, tmp_path):
    path = tmp_path / f"{name}.onnx"
    TfliteGraph(packaged_model_path(name)).write_onnx(path, 17)
    assert onnx.load(str(path)).opset_import[0].version == 17
    side = VENDOR_MODELS[name].input_size
    boxed = letterbox(_face(np.random.default_rng(0)), side)[0][:, :, ::-1]
    image = ((boxed.astype(np.float32) - 127.5) / 127.5)[None]                  # 1,H,W,3 in [-1, 1]
    expected = _tflite_outputs(name, image)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"input": image.transpose(0, 3, 1, 2)})))
    assert set(got) == set(VENDOR_MODELS[name].outputs)
    for output, value in got.items():
        scale = np.abs(expected[output]).max()
        assert np.abs(value - expected[output]).max() <= 1e-5 * scale, output


def _face_at(x: float, y: float, size: float = 100.0, score: float = 0.9) -> Detection:
    points = np.array([[x + 30, y + 40], [x + 70, y + 40], [x + 50, y + 60], [x + 50, y + 80], [x, y + 45],
                       [x + 100, y + 45]], np.float32)
    return Detection(np.array([x, y, x + size, y + size], np.float32), score, points)


def test_agreement_counts_faces_found_again_extra_faces_and_moved_points():
    reference = [[_face_at(0, 0), _face_at(300, 0)], [_face_at(50, 50)]]
    same = agreement(reference, reference, BUDGETS["fp32"])
    assert same["passed"] and same["found"] == same["faces"] == 3 and same["mean"] == pytest.approx(1.0)
    shifted = [[_face_at(4, 0), _face_at(300, 0)], [_face_at(50, 50), _face_at(600, 600)]]
    verdict = agreement(reference, shifted, BUDGETS["int8"])
    assert not verdict["passed"] and verdict["extra"] == 1 and verdict["found"] == 3
    assert "1 extra" in verdict["reason"] and verdict["keypoint_error"] == pytest.approx(4 / 100 / 3)
    lost = agreement(reference, [[_face_at(0, 0)], [_face_at(50, 50)]], BUDGETS["int8"])
    assert "2 of 3 faces found again" in lost["reason"]
    with pytest.raises(UserError, match="found no face"):
        agreement([[]], [[]], BUDGETS["int8"])


def test_the_cli_makes_gated_onnx_detectors_that_the_runtime_runs(tmp_path, monkeypatch, faces_dir):  # noqa: F811
    _patch_sources(monkeypatch)
    out = tmp_path / "bundles"
    code = cli.main(["--target", "host", "--checkpoints", "verifier.pt", "--artifacts", "onnx:fp32",
                     "--detector_artifacts", "tflite:fp32,onnx:fp32,onnx:int8", "--calibration", str(faces_dir),
                     "--calibration_images", "32", "--holdout_images", "16", "--out", str(out)])
    bundle = out / "host"
    rows = {r["model"]: r for r in json.loads((bundle / "report.json").read_text())["artifacts"]}
    reference = rows["detector.blazeface_short"]
    assert reference["passed"] and reference["metric"] == "reference" and "faces in 16 held-out photos" in \
        reference["note"]
    assert "| reference |  |  |  |" in (bundle / "report.md").read_text()        # nothing measured: blanks
    fp32 = rows["detector.blazeface_short.onnx.fp32"]
    assert fp32["passed"] and fp32["mean"] == pytest.approx(1.0, abs=1e-4) and "0 extra" in fp32["note"]
    int8 = rows["detector.blazeface_short.onnx.int8"]
    assert int8["metric"] == "box IoU" and ("faces" in int8["note"])
    assert code == (0 if all(r["passed"] for r in rows.values()) else 1)
    manifest = read_manifest(bundle, verify_files=True)
    board = load_board("host")
    # the runtime picks the ONNX file when asked and finds the same face as the packaged file
    choice = choose_model(manifest, board, "detect", backend="onnxruntime", precision="fp32",
                          architecture="blazeface_short")
    assert choice.entry.file == "detector.blazeface_short.fp32.onnx" and choice.entry.input.layout == "NCHW"
    packaged = choose_model(manifest, board, "detect", backend="tflite", architecture="blazeface_short")
    photo = np.pad(_face(np.random.default_rng(3)), ((60, 60), (60, 60), (0, 0)), constant_values=40)
    found = []
    for entry, backend in ((choice.entry, "onnxruntime"), (packaged.entry, "tflite")):
        model = load_model(bundle, entry, backend, BackendOptions(threads=1))
        found.append(build_detector(model).detect(photo))
        model.close()
    assert len(found[0]) == len(found[1]) == 1
    assert np.allclose(found[0][0].box, found[1][0].box, atol=0.05)
    # an INT8 file keeps each output's head in float: the heads' weights are float initializers
    if (bundle / "detector.blazeface_short.int8.onnx").exists():
        graph = onnx.load(str(bundle / "detector.blazeface_short.int8.onnx")).graph
        heads = set(output_heads(onnx.load(str(bundle / "detector.blazeface_short.fp32.onnx")).graph))
        floats = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
        head_convs = [n for n in graph.node if n.name in heads and n.op_type == "Conv"]
        assert head_convs and all(n.input[1] in floats for n in head_convs)


def test_a_graph_the_converter_cannot_make_is_a_rejected_row_and_the_bundle_is_built(tmp_path, monkeypatch, capsys,
                                                                                      faces_dir):  # noqa: F811
    def unconvertible(self, out, opset):
        raise ExportFailed(f"tflite2onnx cannot convert {self.path.name}: op CUSTOM not supported")

    monkeypatch.setattr(TfliteGraph, "write_onnx", unconvertible)
    _patch_sources(monkeypatch)
    out = tmp_path / "bundles"
    code = cli.main(["--target", "host", "--checkpoints", "verifier.pt", "--artifacts", "onnx:fp32",
                     "--detector_artifacts", "tflite:fp32,onnx:fp16", "--calibration", str(faces_dir),
                     "--calibration_images", "32", "--holdout_images", "16", "--out", str(out)])
    assert code == 1
    assert "detector.blazeface_short.onnx.fp16 rejected: tflite2onnx cannot convert" in capsys.readouterr().err
    manifest = read_manifest(out / "host", verify_files=True)
    assert {e.file for e in manifest.for_task("detect")} == {"detector.blazeface_short.tflite",
                                                            "detector.blazeface_full.tflite"}
    assert not list((out / "host").glob("detector.*.onnx"))


@pytest.mark.parametrize("target, artifacts, message", [
    ("host", "tflite:int8", "detector artifact tflite:int8 cannot be made"),
    ("jetson-nano", "tflite:fp32,onnx:int8", "board jetson-nano does not support onnx:int8"),
    ("host", "onnx:fp33", "bad artifact 'onnx:fp33'"),
    ("host", "onnx:int8", "leave board host nothing to detect with at its detect precision (fp32 on onnxruntime, "
                          "tflite): add tflite:fp32"),
])
def test_detector_files_that_cannot_be_made_are_refused_before_any_work(target, artifacts, message, capsys,
                                                                        monkeypatch):
    monkeypatch.setattr(cli, "load_sources", lambda path: pytest.fail("work started"))
    assert cli.main(["--target", target, "--detector_artifacts", artifacts]) == 2
    assert message in capsys.readouterr().err


def test_photos_without_enough_faces_are_refused_before_any_export(tmp_path, monkeypatch, capsys):
    blank = tmp_path / "walls"
    blank.mkdir()
    for i in range(12):
        cv2.imwrite(str(blank / f"{i}.png"), np.full((120, 160, 3), 20 * i, np.uint8))
    _patch_sources(monkeypatch)
    monkeypatch.setattr(cli, "build_bundle", lambda *a, **k: pytest.fail("exports started"))
    code = cli.main(["--target", "jetson", "--checkpoints", "verifier.pt", "--calibration", str(blank),
                     "--calibration_images", "8", "--holdout_images", "4", "--out", str(tmp_path / "out")])
    assert code == 2
    assert "finds 0 faces in the 4 held-out photos" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.real
def test_full_range_int8_finds_the_same_real_faces(shared_data, tmp_path):
    photos = load_calibration_set(shared_data / "faces80" / "net_7876", count=100, seed=0, holdout=40)
    staging, work = tmp_path / "bundle", tmp_path / "work"
    staging.mkdir()
    work.mkdir()
    board = load_board("host")
    entries, rows = compile_detectors(board, ["blazeface_full"], [Artifact("onnx", "fp16"), Artifact("onnx", "int8")],
                                      DetectorPhotos.load(photos, ["blazeface_full"], 2), staging, work, "minmax",
                                      threads=2)
    assert [r.model for r in rows] == ["detector.blazeface_full.onnx.fp16", "detector.blazeface_full.onnx.int8"]
    assert all(r.passed for r in rows), [r.reason for r in rows]
    int8 = entries[1].accuracy
    assert int8["found"] >= 0.95 * int8["faces"] and int8["mean"] >= 0.9 and int8["keypoint_error"] < 0.04
    assert entries[1].calibration["images"] == 100
