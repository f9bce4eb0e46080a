"""Golden outputs: a bundle's files checked where it runs against what they computed when it was compiled."""
import numpy as np
import pytest

from edge.base.errors import UserError
from edge.bundles.golden import GOLDEN_FILE, check_folder, write_golden
from edge.bundles.installed import current_bundle
from edge.commands.cli import main as edge_main
from edge.runtime.boards import load_board
from edge.runtime.manifest import read_manifest
from edge.runtime.preprocess import prepare_batch, verifier_input_spec

pytestmark = pytest.mark.unit


def face_crops(count: int) -> np.ndarray:
    from synthetic_faces import identities, render_face, sample_nuisance

    people = identities(count, 40)
    return np.stack([render_face(p, sample_nuisance(np.random.default_rng(p.seed)), 112)[0] for p in people])


def with_golden(bundle, crops: np.ndarray, reference: np.ndarray):
    manifest = read_manifest(bundle)
    write_golden(bundle, list(manifest.models), {"verifier": {"crops": crops, "reference": reference}},
                 load_board("host"), 1)
    return bundle


def channel_means(crops: np.ndarray) -> np.ndarray:
    """What the tiny verifier computes, worked out in numpy rather than by running it."""
    return prepare_batch(list(crops), verifier_input_spec()).mean(axis=(2, 3))


def test_every_file_of_a_bundle_matches_its_golden_outputs(verify_bundle, signer, capsys):
    crops = face_crops(8)
    bundle = with_golden(verify_bundle, crops, channel_means(crops))
    signer(bundle)
    with np.load(bundle / GOLDEN_FILE) as golden:
        assert golden["frame"].shape == (280, 280, 3)
        found = {name: len(golden[name]) for name in golden.files if name.endswith(".boxes")}
    assert len(found) == 2 and min(found.values()) == 4          # the detectors find the faces in the frame
    checks = check_folder(bundle)
    assert [(c.file, c.precision, c.passed) for c in checks][-2:] == [("tiny.onnx", "fp32", True),
                                                                      ("tiny.onnx", "int8", True)]
    assert all(c.passed for c in checks) and len(checks) == 4
    assert edge_main(["bundle", "check", str(bundle)]) == 0
    assert "4 of 4 files match their golden outputs" in capsys.readouterr().out


def test_a_file_computing_something_else_fails_and_the_bundle_is_not_installed(verify_bundle, signer, capsys):
    crops = face_crops(8)
    bundle = with_golden(verify_bundle, crops, channel_means(crops)[:, ::-1])     # not what the file computes
    signer(bundle)
    assert edge_main(["bundle", "check", str(bundle)]) == 1
    assert "FAIL tiny.onnx (fp32, onnxruntime): cosine mean" in capsys.readouterr().out
    assert edge_main(["bundle", "install", str(bundle)]) == 2
    assert "do not compute here what they computed at compile time" in capsys.readouterr().err
    with pytest.raises(UserError, match="no bundle installed"):
        current_bundle()


def test_a_bundle_without_golden_outputs_or_with_a_broken_file_says_so(verify_bundle):
    with pytest.raises(UserError, match="has no golden.npz.*recompile"):
        check_folder(verify_bundle)
    (verify_bundle / GOLDEN_FILE).write_bytes(b"not an npz")
    with pytest.raises(UserError, match="cannot be read"):
        check_folder(verify_bundle)


def test_with_runtimes_here_a_file_no_runtime_here_runs_is_skipped_not_failed(verify_bundle, signer, capsys,
                                                                             monkeypatch):
    """As a Jetson bundle's TensorRT-only files on an arm64 machine without TensorRT: the ONNX files with no ONNX
    runtime here are listed as skipped; the TFLite detectors are still checked."""
    import edge.runtime.models as models

    crops = face_crops(8)
    bundle = with_golden(verify_bundle, crops, channel_means(crops))
    signer(bundle)
    monkeypatch.setattr(models, "runnable_here", lambda backend: backend == "tflite")
    checks = check_folder(bundle, runtimes_here=True)
    assert [(c.file, c.skipped) for c in checks if c.skipped] == [("tiny.onnx", True), ("tiny.onnx", True)]
    assert all(c.passed for c in checks if not c.skipped) and sum(not c.skipped for c in checks) == 2
    assert edge_main(["bundle", "check", str(bundle), "--runtimes_here"]) == 0
    out = capsys.readouterr().out
    assert "bundle check: skip tiny.onnx" in out and "2 of 2 files match their golden outputs; 2 skipped" in out
