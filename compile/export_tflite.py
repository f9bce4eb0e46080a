"""TFLite FP32 export through litert-torch (no TensorFlow), read back with the LiteRT interpreter.

litert-torch keeps the PyTorch signature, so the file takes NCHW input unless a channel-last wrapper is
added; the layout is recorded from the interpreter's input shape, never assumed.
"""
from __future__ import annotations

import importlib
import os
import warnings
from importlib.metadata import version

import torch

from compile.exporters import ExportedFile, ExportRequest
from edge.errors import UserError
from edge.quiet import CONVERTER_NOISE, stderr_filtered

CONVERT_EXTRA = "pip install 'edge-face[convert]'"


def require_converter():
    """litert-torch brings about 1.1 GB of dependencies, so it lives in an optional extra."""
    # Its TensorFlow-derived C++ core logs oneDNN notices at INFO; keep compile's output readable.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with stderr_filtered(CONVERTER_NOISE):
            return importlib.import_module("litert_torch")
    except ImportError as err:
        raise UserError(f"TFLite export needs litert-torch ({err}); install it with: {CONVERT_EXTRA}") from err


def export_fp32(request: ExportRequest) -> ExportedFile:
    litert_torch = require_converter()
    sample = torch.zeros(request.spec.shape, dtype=torch.float32)      # (1, 3, H, W) per the spec
    # The converter prints a line per pass; compile shows its own progress bar instead.
    litert_torch.config.show_progress = False
    with torch.no_grad(), warnings.catch_warnings():
        # litert-torch 0.10 still calls a torch pytree API that torch 2.13 deprecates, once per node
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        litert_torch.convert(request.model.eval(), (sample,)).export(str(request.path))
    return describe_tflite(request)


def describe_tflite(request: ExportRequest) -> ExportedFile:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(request.path))
    details = interpreter.get_input_details()[0]
    shape = tuple(int(d) for d in details["shape"])
    spec = request.spec
    nchw = spec.shape if spec.layout == "NCHW" else (spec.shape[0], spec.shape[3], spec.shape[1], spec.shape[2])
    nhwc = (nchw[0], nchw[2], nchw[3], nchw[1])
    if shape == nchw:
        layout = "NCHW"
    elif shape == nhwc:
        layout = "NHWC"
    else:
        raise UserError(f"{request.path}: TFLite input shape {shape} matches neither {nchw} (NCHW) nor {nhwc} (NHWC)")
    outputs = tuple(o["name"] for o in interpreter.get_output_details())
    return ExportedFile(path=request.path, input_name=details["name"], input_shape=shape, input_layout=layout,
                        output_names=outputs, details={"converter": f"litert-torch {version('litert-torch')}"})
