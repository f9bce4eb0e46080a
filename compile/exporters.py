"""Export formats by name ("format:precision" -> the function that writes that file), imported lazily.

Every exporter takes an ExportRequest and returns an ExportedFile describing the file it wrote, read back from
the file itself (input name, shape, layout), so the manifest records what the runtime will really see.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.base.registry import Registry
from edge.runtime.boards import Artifact
from edge.runtime.manifest import InputSpec

EXPORTERS = Registry("export format", {
    "onnx:fp32": "compile.export_onnx:export_fp32",
    "onnx:fp16": "compile.export_onnx:export_fp16",
    "onnx:int8": "compile.quantize:export_int8",
    "tflite:fp32": "compile.export_tflite:export_fp32",
    "tflite:fp16": "compile.export_tflite:export_fp16",
    "tflite:int8": "compile.export_tflite:export_int8",
})


@dataclass(frozen=True)
class ExportRequest:
    model: object                      # torch.nn.Module in eval mode (typed loosely: no torch import here)
    spec: InputSpec                    # the preprocessing the model was trained with
    output_name: str                   # "embedding" | "image"
    path: Path                         # where the artifact goes
    workdir: Path                      # scratch space for intermediate files
    opset: int                         # highest ONNX opset the board accepts
    calibration: np.ndarray | None = None   # prepared calibration batch (N, ...) for quantized formats
    calibration_method: str = "minmax"      # compile.quantize.METHODS
    int8_activations: str = "uint8"         # the board's choice (edge.runtime.boards.INT8_ACTIVATIONS)
    # INT8: leave each output's head (its last conv and what follows) in float; a detector's raw logits and
    # pixel offsets, concatenated across heads, span ranges one 8-bit scale cannot cover
    float_heads: bool = False


@dataclass(frozen=True)
class ExportedFile:
    path: Path
    input_name: str
    input_shape: tuple[int, ...]       # batch 1
    input_layout: str
    output_names: tuple[str, ...]
    calibration_method: str | None = None
    details: dict = field(default_factory=dict)   # exporter facts worth keeping in the manifest (opset, ...)
    input_dtype: str = "float32"       # an integer input: the runtime quantizes with scale and zero point
    input_quantization: tuple[float, int] | None = None
    output_dtype: str = "float32"      # an integer output: the backend dequantizes it with these
    output_quantization: tuple[float, int] | None = None


class ExportFailed(Exception):
    """A converter could not make this one file (the model uses something it cannot convert or quantize): the
    artifact is rejected with this reason, the rest of the bundle is built."""


def check_buildable(artifact: Artifact) -> None:
    """Fails before any work when compile cannot make ``artifact``."""
    EXPORTERS.target(str(artifact))


def export(artifact: Artifact, request: ExportRequest) -> ExportedFile:
    return EXPORTERS.get(str(artifact))(request)
