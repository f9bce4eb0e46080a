"""TFLite backend through ai-edge-litert (the LiteRT interpreter, XNNPACK on CPU, numpy 2)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.base.errors import UserError
from edge.base.quiet import TFLITE_INFO, stderr_filtered
from edge.runtime.backends.base import Backend, BackendOptions, check_feeds, import_runtime


def dequantized(value: np.ndarray, detail: dict) -> np.ndarray:
    """A full-integer file's int8 output as the real numbers it stands for (scale * (q - zero point)), so every
    caller gets float outputs whatever the file's precision."""
    if not np.issubdtype(value.dtype, np.integer):
        return value
    scale, zero_point = detail["quantization"]
    return (value.astype(np.float32) - zero_point) * np.float32(scale)


class TFLiteBackend(Backend):
    name = "tflite"

    def __init__(self):
        self._interpreter = None
        self._path: Path | None = None
        self._inputs: dict[str, dict] = {}
        self._outputs: list[dict] = []

    def load(self, path: Path, options: BackendOptions) -> None:
        litert = import_runtime("ai_edge_litert.interpreter", "pip install 'edge-face[edge]' (ai-edge-litert)")
        try:
            with stderr_filtered(TFLITE_INFO):     # the delegate line on every load
                self._interpreter = litert.Interpreter(model_path=str(path), num_threads=options.threads)
                self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            raise UserError(f"the TFLite interpreter could not load {path}: {err}") from err
        self._path = path
        self._read_details()

    def _read_details(self) -> None:
        self._inputs = {d["name"]: d for d in self._interpreter.get_input_details()}
        self._outputs = self._interpreter.get_output_details()

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        check_feeds(feeds, list(self._inputs), self._path)
        resized = False
        for name, batch in feeds.items():
            if tuple(batch.shape) != tuple(self._inputs[name]["shape"]):
                # TFLite graphs have static shapes; resizing re-plans memory, so do it only when the batch changes.
                self._interpreter.resize_tensor_input(self._inputs[name]["index"], batch.shape)
                resized = True
        if resized:
            with stderr_filtered(TFLITE_INFO):     # the delegate line on every load
                self._interpreter.allocate_tensors()
            self._read_details()
        for name, batch in feeds.items():
            detail = self._inputs[name]
            self._interpreter.set_tensor(detail["index"], batch.astype(detail["dtype"], copy=False))
        self._interpreter.invoke()
        return {o["name"]: dequantized(self._interpreter.get_tensor(o["index"]), o) for o in self._outputs}

    def close(self) -> None:
        self._interpreter = None

    def describe(self) -> dict:
        from importlib.metadata import version

        return {
            "runtime": "ai-edge-litert",
            "version": version("ai-edge-litert"),
            "delegate": "XNNPACK (CPU)",
            "inputs": [{"name": d["name"], "shape": d["shape"].tolist(), "type": str(np.dtype(d["dtype"]))}
                       for d in self._inputs.values()],
            "outputs": [{"name": o["name"], "shape": o["shape"].tolist(), "type": str(np.dtype(o["dtype"]))}
                        for o in self._outputs],
        }
