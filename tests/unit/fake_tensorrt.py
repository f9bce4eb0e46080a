"""Stand-ins for TensorRT (the 8.x binding API and the 10.x named-tensor API) and cuda-python's ``cudart``.

They keep to the documented call signatures and return conventions, hold device memory as byte arrays, and run
the "engine" (the ONNX file it was built from) with onnxruntime, so the TensorRT backend's parsing, building,
caching, copying and execution are checked up to the boundary of the real libraries.
"""
from __future__ import annotations

import ctypes
import json
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort

SUCCESS = 0


class FakeCudart:
    class cudaError_t:                     # noqa: N801 (cuda-python's spelling)
        cudaSuccess = SUCCESS

    class cudaMemcpyKind:                  # noqa: N801
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    def __init__(self, name: bytes = b"Orin", capability=(8, 7)):
        self.memory: dict[int, bytearray] = {}
        self._next = 0x10000
        self.props = SimpleNamespace(name=name, major=capability[0], minor=capability[1])
        self.streams = 0

    def cudaSetDevice(self, device):       # noqa: N802
        return (SUCCESS,)

    def cudaGetDeviceProperties(self, device):  # noqa: N802
        return SUCCESS, self.props

    def cudaStreamCreate(self):            # noqa: N802
        self.streams += 1
        return SUCCESS, 77

    def cudaStreamDestroy(self, stream):   # noqa: N802
        self.streams -= 1
        return (SUCCESS,)

    def cudaStreamSynchronize(self, stream):  # noqa: N802
        return (SUCCESS,)

    def cudaMalloc(self, nbytes):          # noqa: N802
        pointer = self._next
        self._next += nbytes + 256
        self.memory[pointer] = bytearray(nbytes)
        return SUCCESS, pointer

    def cudaFree(self, pointer):           # noqa: N802
        del self.memory[pointer]
        return (SUCCESS,)

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):  # noqa: N802
        if kind == self.cudaMemcpyKind.cudaMemcpyHostToDevice:
            self.memory[dst][:nbytes] = ctypes.string_at(src, nbytes)
        else:
            ctypes.memmove(dst, bytes(self.memory[src][:nbytes]), nbytes)
        return (SUCCESS,)

    def read(self, pointer: int, shape, dtype=np.float32) -> np.ndarray:
        count = int(np.prod(shape))
        return np.frombuffer(bytes(self.memory[pointer][:count * 4]), dtype).reshape(shape)

    def write(self, pointer: int, array: np.ndarray) -> None:
        data = np.ascontiguousarray(array, np.float32).tobytes()
        self.memory[pointer][:len(data)] = data


def fake_tensorrt(version: str, cudart: FakeCudart):
    """A ``tensorrt`` module of ``version`` (8.x: bindings, explicit-batch flag, max_workspace_size before 8.4;
    10.x: named tensors, execute_async_v3) whose engines compute with onnxruntime on ``cudart``'s memory."""
    major, minor = (int(v) for v in version.split(".")[:2])
    tensor_api = (major, minor) >= (8, 5)
    pool_api = (major, minor) >= (8, 4)
    trt = SimpleNamespace(__version__=version, builds=[])
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, severity=2: None})
    trt.NetworkDefinitionCreationFlag = SimpleNamespace(EXPLICIT_BATCH=0)
    trt.MemoryPoolType = SimpleNamespace(WORKSPACE="workspace")
    trt.BuilderFlag = SimpleNamespace(FP16="FP16", INT8="INT8")
    trt.TensorIOMode = SimpleNamespace(INPUT="input", OUTPUT="output")
    trt.nptype = lambda dtype: np.float32

    class Network:
        def __init__(self, flags):
            # 8.x needs the explicit-batch flag; 10.x deprecates it, so the backend passes 0 there
            assert flags == (0 if major >= 10 else 1), f"network flags {flags} for TensorRT {version}"
            self.model = None

        @property
        def num_inputs(self):
            return len(self.model.graph.input)

        def get_input(self, i):
            tensor = self.model.graph.input[i]
            dims = tuple(d.dim_value or -1 for d in tensor.type.tensor_type.shape.dim)
            return SimpleNamespace(name=tensor.name, shape=dims)

    class Parser:
        def __init__(self, network, logger):
            self.network, self.errors = network, []

        def parse(self, data):
            try:
                self.network.model = onnx.load_from_string(data)
            except Exception as err:       # noqa: BLE001 (the real parser reports any failure as errors)
                self.errors = [f"In node -1: {type(err).__name__}: not an ONNX model"]
                return False
            return True

        @property
        def num_errors(self):
            return len(self.errors)

        def get_error(self, i):
            return self.errors[i]

    class Cache:
        def __init__(self, data):
            self.data = data

        def serialize(self):
            return self.data + b"+"

    class Config:
        def __init__(self):
            self.flags, self.profiles, self.cache = [], [], None
            self.workspace = None

        def set_flag(self, flag):
            self.flags.append(flag)

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)

        def create_timing_cache(self, data):
            return Cache(bytes(data))

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache

        def get_timing_cache(self):
            return self.cache

    if pool_api:
        def set_memory_pool_limit(self, pool, size):
            self.workspace = (pool, size)
        Config.set_memory_pool_limit = set_memory_pool_limit

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags=0):
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            profile = SimpleNamespace(shapes={})
            profile.set_shape = lambda name, low, opt, high: profile.shapes.update({name: (low, opt, high)})
            return profile

        def build_serialized_network(self, network, config):
            inputs = [network.get_input(i) for i in range(network.num_inputs)]
            static = {tensor.name for tensor in inputs if tensor.shape[0] != -1}
            if any(name in static for profile in config.profiles for name in profile.shapes):
                return None                           # TensorRT refuses a profile on a fixed-shape input
            workspace = config.workspace if pool_api else ("max_workspace_size", config.max_workspace_size)
            record = {"flags": config.flags, "workspace": list(workspace),
                      "profiles": [{k: [list(s) for s in v] for k, v in p.shapes.items()} for p in config.profiles]}
            trt.builds.append(record)
            header = json.dumps(record).encode()
            return b"ENGINE" + len(header).to_bytes(4, "little") + header + network.model.SerializeToString()

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            if not data.startswith(b"ENGINE"):
                return None
            size = int.from_bytes(data[6:10], "little")
            return Engine(data[10 + size:], json.loads(data[10:10 + size]))

    class Engine:
        def __init__(self, model_bytes, record):
            self.session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
            self.record = record
            self.names = [i.name for i in self.session.get_inputs()] + [o.name for o in self.session.get_outputs()]
            self.n_inputs = len(self.session.get_inputs())

        def create_execution_context(self):
            return Context(self)

    class Context:
        def __init__(self, engine):
            self.engine, self.shapes, self.addresses = engine, {}, {}

        def _set_shape(self, name, shape):
            profiles = self.engine.record["profiles"]
            if profiles and name in profiles[0]:
                if shape[0] > profiles[0][name][2][0]:
                    return False                      # beyond the optimisation profile, as TensorRT refuses
            elif tuple(shape) != tuple(next(i.shape for i in self.engine.session.get_inputs() if i.name == name)):
                return False                          # a fixed-shape input takes only its own shape
            self.shapes[name] = tuple(shape)
            return True

        def _output_shape(self, name):
            batch = next(iter(self.shapes.values()))[0]
            out = next(o for o in self.engine.session.get_outputs() if o.name == name)
            return (batch, *out.shape[1:])

        def _run(self, address_of):
            feeds = {n: cudart.read(address_of(n), self.shapes[n]) for n in self.shapes}
            outputs = self.engine.session.run(None, feeds)
            for out, value in zip(self.engine.session.get_outputs(), outputs):
                cudart.write(address_of(out.name), value)
            return True

    if tensor_api:
        Engine.num_io_tensors = property(lambda self: len(self.names))
        Engine.get_tensor_name = lambda self, i: self.names[i]
        Engine.get_tensor_mode = lambda self, n: "input" if self.names.index(n) < self.n_inputs else "output"
        Engine.get_tensor_dtype = lambda self, n: "float32"
        Context.set_input_shape = lambda self, n, s: self._set_shape(n, s)
        Context.get_tensor_shape = lambda self, n: self._output_shape(n)
        Context.set_tensor_address = lambda self, n, p: self.addresses.update({n: p})
        Context.execute_async_v3 = lambda self, stream: self._run(lambda n: self.addresses[n])
    if major < 10:
        Engine.num_bindings = property(lambda self: len(self.names))
        Engine.get_binding_name = lambda self, i: self.names[i]
        Engine.binding_is_input = lambda self, i: i < self.n_inputs
        Engine.get_binding_dtype = lambda self, i: "float32"
        Context.set_binding_shape = lambda self, i, s: self._set_shape(self.engine.names[i], s)
        Context.get_binding_shape = lambda self, i: self._output_shape(self.engine.names[i])

        def execute_async_v2(self, bindings, stream_handle):
            return self._run(lambda n: bindings[self.engine.names.index(n)])
        Context.execute_async_v2 = execute_async_v2

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, Parser, Runtime
    return trt
