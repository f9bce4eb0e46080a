"""The TensorRT backend against stand-ins of TensorRT 8.2 (bindings), 8.6 (both APIs) and 10.x (named tensors).

No machine here has TensorRT or a CUDA GPU: these tests check everything up to the libraries' documented calls
(parse, build with the recipe's flags and profile, cache per TensorRT version and GPU, copy in, execute, copy
out); the board tier runs the real thing on a Jetson.
"""
from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edge.base.errors import UserError
from edge.runtime.backends.base import BackendOptions
from edge.runtime.backends.tensorrt_backend import TensorRTBackend
from tests.unit.fake_tensorrt import FakeCudart, fake_tensorrt

pytestmark = pytest.mark.unit


def channel_means_onnx(path, batch="batch"):
    """(N, 3, 112, 112) -> (N, 3): a dynamic batch, as compile exports (or a fixed one, as a converted detector)."""
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["embedding"])], "means",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 112, 112])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture
def model_file(tmp_path):
    (tmp_path / "bundle").mkdir()
    return channel_means_onnx(tmp_path / "bundle" / "verifier.int8.onnx")


@pytest.mark.parametrize("version", ["8.2.1", "8.6.2", "10.3.0"])
def test_builds_caches_and_runs_an_engine_with_each_api(version, model_file, tmp_path):
    cudart = FakeCudart()
    trt = fake_tensorrt(version, cudart)
    cache = tmp_path / "bundle" / "engines"
    options = BackendOptions(precision="int8", batch=2, engine_cache=cache)
    backend = TensorRTBackend(trt, cudart)
    backend.load(model_file, options)
    faces = np.random.default_rng(0).normal(size=(5, 3, 112, 112)).astype(np.float32)
    out = backend.infer({"input": faces})["embedding"]           # 5 images through a max batch of 2: 3 runs
    assert np.allclose(out, faces.mean(axis=(2, 3)), atol=1e-5)
    described = backend.describe()
    assert described["io_api"] == ("BindingIO" if version == "8.2.1" else "TensorIO")
    backend.close()
    assert cudart.memory == {} and cudart.streams == 0                # every buffer and the stream released
    (build,) = trt.builds
    assert build["flags"] == ["INT8", "FP16"]
    assert build["profiles"] == [{"input": [[1, 3, 112, 112], [2, 3, 112, 112], [2, 3, 112, 112]]}]
    assert build["workspace"] == (["max_workspace_size", 512 << 20] if version == "8.2.1"
                                  else ["workspace", 512 << 20])
    (engine,) = cache.glob("*.engine")
    assert engine.name.startswith("verifier.int8.") and engine.name.endswith(f".trt{version}.orin-sm87.engine")
    assert (cache / f"timing.trt{version}.orin-sm87.cache").is_file()
    again = TensorRTBackend(trt, cudart)
    again.load(model_file, options)                                  # from the cache: nothing built
    assert len(trt.builds) == 1
    again.close()
    other_gpu = FakeCudart(name=b"NVIDIA GeForce RTX 4090", capability=(8, 9))
    TensorRTBackend(fake_tensorrt(version, other_gpu), other_gpu).load(model_file, options)
    assert len(list(cache.glob("*.engine"))) == 2                    # another GPU gets its own engine


@pytest.mark.parametrize("version", ["8.2.1", "10.3.0"])
def test_a_fixed_shape_graph_builds_without_a_profile_and_takes_its_own_shape(version, tmp_path):
    (tmp_path / "bundle").mkdir()
    fixed = channel_means_onnx(tmp_path / "bundle" / "detector.fp16.onnx", batch=1)
    cudart = FakeCudart()
    trt = fake_tensorrt(version, cudart)
    backend = TensorRTBackend(trt, cudart)
    backend.load(fixed, BackendOptions(precision="fp16", batch=1, engine_cache=tmp_path / "bundle" / "engines"))
    assert trt.builds[0]["profiles"] == []
    image = np.random.default_rng(0).normal(size=(1, 3, 112, 112)).astype(np.float32)
    assert np.allclose(backend.infer({"input": image})["embedding"], image.mean(axis=(2, 3)), atol=1e-5)
    with pytest.raises(UserError, match="refused input shape"):
        backend.infer({"input": np.zeros((2, 3, 112, 112), np.float32)})   # its recipe's max batch, not its shape
    backend.close()


def test_recipe_from_the_manifest_and_precision_flags(model_file, tmp_path):
    cudart = FakeCudart()
    trt = fake_tensorrt("10.3.0", cudart)
    backend = TensorRTBackend(trt, cudart)
    backend.load(model_file, BackendOptions(precision="fp16", engine_recipe={"workspace_mb": 256, "max_batch": 4},
                                            engine_cache=tmp_path / "bundle" / "engines"))
    assert trt.builds[-1]["flags"] == ["FP16"] and trt.builds[-1]["workspace"] == ["workspace", 256 << 20]
    assert trt.builds[-1]["profiles"][0]["input"][2][0] == 4
    with pytest.raises(UserError, match="unknown TensorRT recipe keys"):
        TensorRTBackend(trt, cudart).load(model_file, BackendOptions(engine_recipe={"workspace": 1}))


def test_an_unparsable_file_and_a_missing_tensorrt_say_what_is_wrong(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    cudart = FakeCudart()
    with pytest.raises(UserError, match="could not parse the ONNX file: In node -1"):
        TensorRTBackend(fake_tensorrt("10.3.0", cudart), cudart).load(bad, BackendOptions())
    with pytest.raises(UserError, match="tensorrt runtime is not installed.*JetPack"):
        TensorRTBackend().load(bad, BackendOptions())


def test_an_unwritable_cache_is_said_and_the_engine_still_runs(model_file, tmp_path, caplog):
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    cudart = FakeCudart()
    backend = TensorRTBackend(fake_tensorrt("10.3.0", cudart), cudart)
    with caplog.at_level(logging.WARNING):
        backend.load(model_file, BackendOptions(engine_cache=blocked / "engines"))
    assert "could not cache the TensorRT engine" in caplog.text
    assert backend.infer({"input": np.ones((1, 3, 112, 112), np.float32)})["embedding"].shape == (1, 3)
