"""The backend interface every runtime implements: load, infer, close, describe."""
from __future__ import annotations

import abc
import importlib
from pathlib import Path

import numpy as np

from edge.errors import UserError


class Backend(abc.ABC):
    """One loaded model file in one runtime. Single-input models: ``infer`` takes one array."""

    name: str = ""

    @abc.abstractmethod
    def load(self, path: Path, threads: int) -> None:
        """Loads the model file; raises UserError when the file or runtime is unusable."""

    @abc.abstractmethod
    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """Runs the model on an input already prepared to the manifest's spec; returns outputs in model order."""

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
