import numpy as np
import onnxruntime
import pytest

from edge.backends import BACKENDS
from edge.backends.onnxruntime_backend import execution_providers
from edge.errors import UserError
from edge.manifest import sha256_file
from edge.runtime import backend_for_format, load_model
from edge.vendor_models import detector_entry, packaged_model_path

pytestmark = pytest.mark.unit


def test_onnxruntime_backend_uses_only_local_providers():
    assert execution_providers(onnxruntime) == ["CPUExecutionProvider"]


def test_backend_choice_follows_the_board_preference():
    assert backend_for_format("tflite", ("onnxruntime", "tflite")) == "tflite"
    with pytest.raises(UserError, match="no backend in .* runs tensorrt"):
        backend_for_format("tensorrt", ("onnxruntime", "tflite"))
    with pytest.raises(UserError, match="unknown backend 'tensorrtt'"):
        BACKENDS.get("tensorrtt")


@pytest.mark.parametrize("backend", ["onnxruntime", "tflite"])
def test_a_corrupt_model_file_is_refused_with_its_name(tmp_path, backend):
    path = tmp_path / "broken.model"
    path.write_bytes(b"\x00not a model" * 64)
    with pytest.raises(UserError, match="broken.model"):
        BACKENDS.get(backend)().load(path, threads=1)


def test_tflite_backend_runs_the_detector_and_describes_itself():
    path = packaged_model_path("blazeface_short")
    entry = detector_entry("blazeface_short", path.name, path)
    assert entry.sha256 == sha256_file(path)
    model = load_model(path.parent, entry, threads=1, backend="tflite")
    outputs = model.infer(np.zeros((1, 128, 128, 3), np.float32))
    assert sorted(o.shape for o in outputs) == [(1, 896, 1), (1, 896, 16)]
    description = model.backend.describe()
    assert description["runtime"] == "ai-edge-litert" and description["inputs"][0]["shape"] == [1, 128, 128, 3]
    model.close()
