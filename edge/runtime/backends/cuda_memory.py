"""Device buffers and a stream through NVIDIA's cuda-python runtime bindings (``cudart``), for the TensorRT backend.

cuda-python is the binding NVIDIA's TensorRT samples use (pycuda needs a compiler on the board). Its calls return
a tuple whose first item is the error code; every call here checks it and raises with the call's name.
"""
from __future__ import annotations

import importlib

import numpy as np

from edge.runtime.backends.base import import_runtime

INSTALL = "pip install cuda-python (the version matching the board's CUDA: JetPack 6 ships CUDA 12)"


def import_cudart():
    """``cuda.bindings.runtime`` (cuda-python 12.6 and later) or ``cuda.cudart`` (earlier releases)."""
    try:
        return importlib.import_module("cuda.bindings.runtime")
    except ImportError:
        return import_runtime("cuda.cudart", INSTALL)


class CudaDevice:
    """One CUDA stream and the device buffers allocated on it; host arrays are copied in and out by address."""

    def __init__(self, cudart=None, device: int = 0):
        self.cudart = cudart or import_cudart()
        self._call("cudaSetDevice", device)
        props = self._call("cudaGetDeviceProperties", device)
        name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
        self.name = name.strip("\x00 ")
        self.compute_capability = f"{props.major}.{props.minor}"
        self.stream = self._call("cudaStreamCreate")
        self._buffers: dict[str, tuple[int, int]] = {}          # name -> (pointer, bytes)

    def _call(self, name: str, *args):
        result = getattr(self.cudart, name)(*args)
        error, rest = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
        if error != self.cudart.cudaError_t.cudaSuccess:
            raise RuntimeError(f"CUDA {name} failed: {error}")
        return rest[0] if len(rest) == 1 else (rest or None)

    def buffer(self, name: str, nbytes: int) -> int:
        """A device buffer of at least ``nbytes`` for ``name``, reused while large enough."""
        pointer, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if pointer:
                self._call("cudaFree", pointer)
            pointer, size = int(self._call("cudaMalloc", nbytes)), nbytes
            self._buffers[name] = (pointer, size)
        return pointer

    def to_device(self, pointer: int, array: np.ndarray) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call("cudaMemcpyAsync", pointer, array.ctypes.data, array.nbytes, kind, self.stream)

    def to_host(self, array: np.ndarray, pointer: int) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call("cudaMemcpyAsync", array.ctypes.data, pointer, array.nbytes, kind, self.stream)

    def synchronize(self) -> None:
        self._call("cudaStreamSynchronize", self.stream)

    def close(self) -> None:
        for pointer, _ in self._buffers.values():
            self._call("cudaFree", pointer)
        self._buffers.clear()
        if self.stream is not None:
            self._call("cudaStreamDestroy", self.stream)
            self.stream = None
