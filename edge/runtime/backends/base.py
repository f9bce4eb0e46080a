"""The backend interface every runtime implements: load, infer, close, describe.

A backend is a runtime (onnxruntime, the TFLite interpreter, TensorRT), not a file format: TensorRT, for one,
runs a bundle's ONNX file by building its engine on the device. ``edge.runtime.backends.BACKEND_FORMATS`` says which
formats each runtime reads.
"""
from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.base.errors import UserError


@dataclass(frozen=True)
class BackendOptions:
    """How to load a model file; a runtime ignores what it has no use for."""

    threads: int = 1
    # onnxruntime's idle intra-op threads spin by default, so interleaved sessions on a small board inflate each
    # other's latencies (DESIGN.md); off unless a single model owns the CPU.
    spin: bool = False
    # Run a batch as concurrent one-image calls, one thread each, instead of one call over ``threads`` threads:
    # for a model always fed a batch (a face and its mirror) this is faster, since small convolutions use a second
    # thread poorly (dlib's ResNet at batch 2, 2 threads: INT8 2.6 ms against 3.3, FP32 4.8 against 5.5).
    split_batch: bool = False
    # What a runtime that builds its own engine on the device needs (TensorRT): the file's precision, the batch it
    # is usually fed, the manifest's build recipe, and the folder that keeps built engines.
    precision: str = "fp32"
    batch: int = 1
    engine_recipe: dict | None = None
    engine_cache: Path | None = None


class Backend(abc.ABC):
    """One loaded model file in one runtime; inputs and outputs are named as in the bundle manifest."""

    name: str = ""

    @abc.abstractmethod
    def load(self, path: Path, options: BackendOptions) -> None:
        """Loads the model file; raises UserError when the file or runtime is unusable."""

    @abc.abstractmethod
    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs the model on inputs prepared to the manifest's specs, by name; returns every output by name."""

    @abc.abstractmethod
    def close(self) -> None:
        """Releases the runtime's resources."""

    @abc.abstractmethod
    def describe(self) -> dict:
        """Runtime name and version, execution provider or delegate, input and output names and shapes."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def import_runtime(module: str, install_hint: str):
    """Imports a runtime module, turning its absence into an error that names what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise UserError(f"the {module} runtime is not installed ({err}); install it with: {install_hint}") from err


def check_feeds(feeds: dict[str, np.ndarray], expected: list[str], path: Path | str) -> None:
    """A feed missing or unknown is a bug in the caller's manifest: say which names the file has."""
    if set(feeds) != set(expected):
        raise UserError(f"{path} takes inputs {expected}, was given {sorted(feeds)}; the bundle manifest and the "
                        f"file disagree: recompile the bundle")
