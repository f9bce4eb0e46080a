"""TensorRT backend: runs a bundle's ONNX file through an engine built on the device (``tensorrt_engine``).

Two I/O conventions are spoken: named tensors with ``execute_async_v3`` (TensorRT 8.5 and later, the only one in
10.x), and bindings with ``execute_async_v2`` (TensorRT 8.0-8.4, the JetPack 4.6 line). Inputs are copied to
device buffers, the engine runs on one CUDA stream, outputs come back as numpy arrays named as in the manifest.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.base.errors import UserError
from edge.runtime.backends.base import Backend, BackendOptions, check_feeds, import_runtime
from edge.runtime.backends.cuda_memory import CudaDevice
from edge.runtime.backends.tensorrt_engine import EngineRecipe, gpu_slug, load_or_build

INSTALL = ("TensorRT comes with JetPack (python3-libnvinfer): make the venv with --system-site-packages so that "
           "it sees it, or run this board's bundle with --backend onnxruntime")


class TensorIO:
    """TensorRT 8.5+ and 10.x: I/O tensors by name."""

    def __init__(self, trt, engine, context):
        self.trt, self.engine, self.context = trt, engine, context
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]

    def dtype(self, name: str):
        return self.trt.nptype(self.engine.get_tensor_dtype(name))

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> None:
        if not self.context.set_input_shape(name, shape):
            raise UserError(f"TensorRT refused input shape {shape} for {name}")

    def output_shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.context.get_tensor_shape(name))

    def bind(self, name: str, pointer: int) -> None:
        self.context.set_tensor_address(name, pointer)

    def execute(self, stream: int) -> bool:
        return self.context.execute_async_v3(stream)


class BindingIO:
    """TensorRT 8.0-8.4: I/O by binding index."""

    def __init__(self, trt, engine, context):
        self.trt, self.engine, self.context = trt, engine, context
        names = [engine.get_binding_name(i) for i in range(engine.num_bindings)]
        self.index = {name: i for i, name in enumerate(names)}
        self.inputs = [n for n in names if engine.binding_is_input(self.index[n])]
        self.outputs = [n for n in names if n not in self.inputs]
        self.bindings = [0] * len(names)

    def dtype(self, name: str):
        return self.trt.nptype(self.engine.get_binding_dtype(self.index[name]))

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> None:
        if not self.context.set_binding_shape(self.index[name], shape):
            raise UserError(f"TensorRT refused input shape {shape} for {name}")

    def output_shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.context.get_binding_shape(self.index[name]))

    def bind(self, name: str, pointer: int) -> None:
        self.bindings[self.index[name]] = pointer

    def execute(self, stream: int) -> bool:
        return self.context.execute_async_v2(bindings=self.bindings, stream_handle=stream)


def io_for(trt, engine, context):
    """The named-tensor API where this TensorRT has it, else bindings."""
    if hasattr(engine, "num_io_tensors") and hasattr(context, "execute_async_v3"):
        return TensorIO(trt, engine, context)
    return BindingIO(trt, engine, context)


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, trt=None, cudart=None):
        self._trt, self._cudart = trt, cudart            # injectable: the tests speak both APIs through fakes
        self._device: CudaDevice | None = None
        self._engine = self._context = self._io = None
        self._path: Path | None = None
        self._recipe: EngineRecipe | None = None

    def load(self, path: Path, options: BackendOptions) -> None:
        trt = self._trt or import_runtime("tensorrt", INSTALL)
        self._trt = trt
        self._device = CudaDevice(self._cudart)
        gpu = gpu_slug(self._device.name, self._device.compute_capability)
        self._recipe = EngineRecipe.from_dict(options.engine_recipe, options.precision, options.batch)
        logger = trt.Logger(trt.Logger.WARNING)
        serialized = load_or_build(trt, logger, Path(path), self._recipe, options.engine_cache, gpu)
        self._engine = trt.Runtime(logger).deserialize_cuda_engine(serialized)
        if self._engine is None:
            raise UserError(f"TensorRT could not load the engine for {path}: delete {options.engine_cache} to have "
                            f"it built again")
        self._context = self._engine.create_execution_context()
        self._io = io_for(trt, self._engine, self._context)
        self._path = Path(path)

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        check_feeds(feeds, self._io.inputs, self._path)
        batch = len(next(iter(feeds.values())))
        step = self._recipe.max_batch
        parts = [self._run({k: v[i:i + step] for k, v in feeds.items()}) for i in range(0, batch, step)]
        return {name: np.concatenate([p[name] for p in parts]) for name in self._io.outputs}

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        device, io = self._device, self._io
        staged = []                                   # kept alive until the stream has copied them
        for name, array in feeds.items():
            array = np.ascontiguousarray(array, dtype=io.dtype(name))
            io.set_input_shape(name, array.shape)
            pointer = device.buffer(name, array.nbytes)
            device.to_device(pointer, array)
            io.bind(name, pointer)
            staged.append(array)
        outputs = {}
        for name in io.outputs:
            host = np.empty(io.output_shape(name), io.dtype(name))
            pointer = device.buffer(name, host.nbytes)
            io.bind(name, pointer)
            outputs[name] = (host, pointer)
        if not io.execute(int(device.stream)):
            raise RuntimeError(f"TensorRT failed to run {self._path}")
        for host, pointer in outputs.values():
            device.to_host(host, pointer)
        device.synchronize()
        return {name: host for name, (host, _) in outputs.items()}

    def close(self) -> None:
        self._context = self._engine = self._io = None
        if self._device is not None:
            self._device.close()
            self._device = None

    def describe(self) -> dict:
        return {"runtime": "tensorrt", "version": self._trt.__version__, "gpu": self._device.name,
                "compute_capability": self._device.compute_capability, "recipe": self._recipe.to_dict(),
                "io_api": type(self._io).__name__, "inputs": self._io.inputs, "outputs": self._io.outputs}
