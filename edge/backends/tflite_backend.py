"""TFLite backend through ai-edge-litert (the LiteRT interpreter, XNNPACK on CPU, numpy 2)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.backends.base import Backend, import_runtime
from edge.errors import UserError


class TFLiteBackend(Backend):
    name = "tflite"

    def __init__(self):
        self._interpreter = None
        self._input = None
        self._outputs: list[dict] = []

    def load(self, path: Path, threads: int) -> None:
        litert = import_runtime("ai_edge_litert.interpreter", "pip install 'edge-face[edge]' (ai-edge-litert)")
        try:
            self._interpreter = litert.Interpreter(model_path=str(path), num_threads=threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            raise UserError(f"the TFLite interpreter could not load {path}: {err}") from err
        self._input = self._interpreter.get_input_details()[0]
        self._outputs = self._interpreter.get_output_details()

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        if tuple(batch.shape) != tuple(self._input["shape"]):
            # TFLite graphs have static shapes; resizing re-plans memory, so do it only when the batch changes.
            self._interpreter.resize_tensor_input(self._input["index"], batch.shape)
            self._interpreter.allocate_tensors()
            self._input = self._interpreter.get_input_details()[0]
            self._outputs = self._interpreter.get_output_details()
        self._interpreter.set_tensor(self._input["index"], batch.astype(self._input["dtype"], copy=False))
        self._interpreter.invoke()
        return [self._interpreter.get_tensor(o["index"]) for o in self._outputs]

    def close(self) -> None:
        self._interpreter = None

    def describe(self) -> dict:
        from importlib.metadata import version

        return {
            "runtime": "ai-edge-litert",
            "version": version("ai-edge-litert"),
            "delegate": "XNNPACK (CPU)",
            "inputs": [{"name": self._input["name"], "shape": self._input["shape"].tolist(),
                        "type": str(np.dtype(self._input["dtype"]))}],
            "outputs": [{"name": o["name"], "shape": o["shape"].tolist(), "type": str(np.dtype(o["dtype"]))}
                        for o in self._outputs],
        }
