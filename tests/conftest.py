"""Test tiers (markers in pyproject.toml), the --board option, and the shared real-data location."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EDGE_FACE_DATA", ROOT.parent / "shared" / "data"))


def pytest_addoption(parser):
    parser.addoption("--board", default=None, help="run the board tier on this board (e.g. rpi4, jetson)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--board"):
        return
    skip = pytest.mark.skip(reason="board test: needs the hardware, run with --board NAME")
    for item in items:
        if "board" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real face data not found at {SHARED_DATA} (set EDGE_FACE_DATA)")
    return SHARED_DATA


@pytest.fixture
def signer(tmp_path):
    """Signs a bundle folder with a test key that this test's board ($EDGE_FACE_HOME) trusts: ``signer(folder)``."""
    import shutil

    from edge.base.paths import trusted_keys_dir
    from edge.bundles.signing import make_key_pair, sign_bundle

    key, public = make_key_pair(tmp_path / "signing-keys")
    trusted_keys_dir().mkdir(parents=True, exist_ok=True)
    shutil.copy(public, trusted_keys_dir() / public.name)
    return lambda folder: sign_bundle(folder, key)


@pytest.fixture
def detector_bundle(tmp_path, signer):
    """Makes a host bundle holding packaged detector files: ``detector_bundle("blazeface_full") -> folder``; by
    default the ones the host board's detection strategy runs. Signed with a key this test's board trusts."""
    import shutil

    from edge.faces.packaged_detector import detector_entry
    from edge.faces.scan import strategy_detectors
    from edge.runtime.boards import load_board
    from edge.runtime.manifest import Manifest, write_manifest
    from edge.runtime.packaged import packaged_model_path

    def make(*names: str) -> Path:
        names = names or tuple(strategy_detectors(load_board("host").detection))
        folder = tmp_path / f"bundle-{'-'.join(names)}"
        folder.mkdir()
        entries = []
        for name in names:
            source = packaged_model_path(name)
            shutil.copy(source, folder / source.name)
            entries.append(detector_entry(name, source.name, folder / source.name))
        write_manifest(folder, Manifest(board="host", created="2026-01-01T00:00:00Z", tools={},
                                        models=tuple(entries)))
        signer(folder)
        return folder
    return make


def _tiny_embedder(path) -> None:
    """A 3-D "embedding" (channel means) as an ONNX graph: enough to exercise the verify path without torch."""
    onnx = pytest.importorskip("onnx")
    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["embedding"])],
        "tiny_embedder",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("embedding", onnx.TensorProto.FLOAT, [1, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


@pytest.fixture
def verify_bundle(detector_bundle, signer):
    """The host's detectors plus a tiny ONNX verifier (channel means), listed as fp32 and (same file) int8; signed
    with a key this test's board trusts."""
    import json

    from edge.faces.packaged_detector import detector_entry
    from edge.runtime.manifest import Manifest, ModelEntry, OutputSpec, sha256_file, write_manifest
    from edge.runtime.preprocess import verifier_input_spec

    bundle = detector_bundle()
    path = bundle / "tiny.onnx"
    _tiny_embedder(path)

    def entry(name: str, precision: str) -> ModelEntry:
        return ModelEntry(name=name, task="verify", architecture="tiny", file=path.name, format="onnx",
                          precision=precision, inputs=(verifier_input_spec(),),
                          outputs=(OutputSpec("embedding", (1, 3), "embedding (L2-normalise)"),),
                          sha256=sha256_file(path), source_sha256="0" * 64, threshold=0.5)

    manifest = json.loads((bundle / "manifest.json").read_text())
    detectors = tuple(detector_entry(m["architecture"], m["file"], bundle / m["file"]) for m in manifest["models"])
    models = (*detectors, entry("verifier.onnx.fp32", "fp32"), entry("verifier.onnx.int8", "int8"))
    write_manifest(bundle, Manifest(board="host", created="2026-01-01T00:00:00Z", tools={}, models=models))
    signer(bundle)
    return bundle


@pytest.fixture(autouse=True)
def own_kiosk_home(request, tmp_path_factory, monkeypatch):
    """Each test gets its own empty $EDGE_FACE_HOME, so a gallery or measured board profile of the machine that
    runs the tests never changes what they see; the board tier keeps the board's own (its profile included)."""
    if not request.config.getoption("--board"):
        monkeypatch.setenv("EDGE_FACE_HOME", str(tmp_path_factory.mktemp("home")))
