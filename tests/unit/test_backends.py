import dataclasses

import numpy as np
import onnxruntime
import pytest

from edge.base.errors import UserError
from edge.faces.packaged_detector import detector_entry
from edge.runtime.backends import BACKENDS
from edge.runtime.backends.base import BackendOptions
from edge.runtime.backends.onnxruntime_backend import execution_providers
from edge.runtime.boards import load_board
from edge.runtime.manifest import InputSpec, Manifest, ModelEntry, OutputSpec, sha256_file
from edge.runtime.models import backend_for, choose_model, load_model
from edge.runtime.packaged import packaged_model_path

pytestmark = pytest.mark.unit


def _entry(name, fmt, precision, task="verify"):
    spec = InputSpec("input", (1, 3, 4, 4), "NCHW", "float32", "RGB", (0, 0, 0), (1, 1, 1), crop="arcface112")
    return ModelEntry(name=name, task=task, architecture="a", file=f"{name}.{fmt}", format=fmt, precision=precision,
                      inputs=(spec,), outputs=(OutputSpec("embedding", (1, 8)),), sha256="s", source_sha256="c")


MANIFEST = Manifest("host", "now", {}, (_entry("v32", "onnx", "fp32"), _entry("v8", "onnx", "int8"),
                                        _entry("t32", "tflite", "fp32")))


def test_onnxruntime_backend_uses_only_local_providers_in_preference_order_with_cpu_last():
    """Whatever this machine's onnxruntime offers (CPU only here, CUDA too on a GPU box)."""
    from types import SimpleNamespace

    chosen = execution_providers(onnxruntime)
    assert chosen[-1] == "CPUExecutionProvider" and set(chosen) <= set(onnxruntime.get_available_providers())
    gpu_box = SimpleNamespace(get_available_providers=lambda: ["AzureExecutionProvider", "CPUExecutionProvider",
                                                                "CUDAExecutionProvider"])
    assert execution_providers(gpu_box) == ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_backend_for_follows_the_board_preference_and_refuses_what_cannot_run():
    assert backend_for(_entry("t", "tflite", "fp32"), ("onnxruntime", "tflite")) == "tflite"
    with pytest.raises(UserError, match="no backend in .* runs tflite"):
        backend_for(_entry("t", "tflite", "fp32"), ("onnxruntime",))
    with pytest.raises(UserError, match="onnxruntime cannot run tflite"):
        backend_for(_entry("t", "tflite", "fp32"), (), backend="onnxruntime")
    with pytest.raises(UserError, match="unknown backend 'tensorrtt'"):
        BACKENDS.get("tensorrtt")


def test_choose_model_is_the_one_place_backend_and_precision_are_decided():
    host = load_board("host")                      # prefers onnxruntime, INT8 for verify
    choice = choose_model(MANIFEST, host, "verify")
    assert (choice.entry.name, choice.backend) == ("v8", "onnxruntime") and "board default" in choice.reason
    # The board's INT8 is not in TFLite here: its FP32 reference runs instead, and the reason says so.
    choice = choose_model(MANIFEST, host, "verify", backend="tflite")
    assert (choice.entry.name, choice.reason) == ("t32", "fp32 fallback fp32 on tflite")
    # An explicit precision is never replaced by another.
    with pytest.raises(UserError, match="at precision int8"):
        choose_model(MANIFEST, host, "verify", backend="tflite", precision="int8")
    rpi4 = dataclasses.replace(host, backends=("tflite", "onnxruntime"), precision={"verify": "fp32"})
    assert choose_model(MANIFEST, rpi4, "verify").entry.name == "t32"
    with pytest.raises(UserError, match="no detect model"):
        choose_model(MANIFEST, host, "detect")


@pytest.mark.parametrize("backend", ["onnxruntime", "tflite"])
def test_a_corrupt_model_file_is_refused_with_its_name(tmp_path, backend):
    path = tmp_path / "broken.model"
    path.write_bytes(b"\x00not a model" * 64)
    with pytest.raises(UserError, match="broken.model"):
        BACKENDS.get(backend)().load(path, BackendOptions(threads=1))


def test_tflite_backend_runs_the_detector_by_name_and_describes_itself():
    path = packaged_model_path("blazeface_short")
    entry = detector_entry("blazeface_short", path.name, path)
    assert entry.sha256 == sha256_file(path)
    model = load_model(path.parent, entry, "tflite", BackendOptions(threads=1))
    outputs = model.infer({"input": np.zeros((1, 128, 128, 3), np.float32)})
    assert {name: o.shape for name, o in outputs.items()} == {"regressors": (1, 896, 16),
                                                             "classificators": (1, 896, 1)}
    assert [o.name for o in entry.outputs] == ["regressors", "classificators"]
    with pytest.raises(UserError, match=r"takes inputs \['input'\], was given \['image'\]"):
        model.infer({"image": np.zeros((1, 128, 128, 3), np.float32)})
    description = model.backend.describe()
    assert description["runtime"] == "ai-edge-litert" and description["inputs"][0]["shape"] == [1, 128, 128, 3]
    model.close()


def test_split_batch_runs_one_image_calls_side_by_side_with_the_same_outputs(tmp_path):
    onnx = pytest.importorskip("onnx")
    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["embedding"])], "pool",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("embedding", onnx.TensorProto.FLOAT, ["batch", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "pool.onnx"))
    batch = np.random.default_rng(0).random((3, 3, 16, 16), dtype=np.float32)
    outputs = {}
    for split in (False, True):
        backend = BACKENDS.get("onnxruntime")()
        backend.load(tmp_path / "pool.onnx", BackendOptions(threads=2, split_batch=split))
        outputs[split] = backend.infer({"input": batch})["embedding"]
        assert backend.infer({"input": batch[:1]})["embedding"].shape == (1, 3)
        backend.close()
    assert outputs[True].shape == (3, 3)
    np.testing.assert_allclose(outputs[True], outputs[False], rtol=1e-6)
    np.testing.assert_allclose(outputs[True], batch.mean(axis=(2, 3)), rtol=1e-5)


def test_native_noise_is_dropped_and_everything_else_still_reaches_stderr(capfd):
    import os

    from edge.base.quiet import CONVERTER_NOISE, TFLITE_INFO, stderr_filtered

    with stderr_filtered(TFLITE_INFO):
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\nERROR: tensor 3 is broken\n")
    with stderr_filtered(CONVERTER_NOISE):
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
                    b"I0000 00:00:1795839915.939944   17574 port.cc:153] oneDNN custom operations are on.\n"
                    b"Failed to load /x/torchao/_C_mxfp8.so: Could not load this library\n"
                    b"a converter warning worth reading\n")
    assert capfd.readouterr().err.splitlines() == ["ERROR: tensor 3 is broken", "a converter warning worth reading"]
