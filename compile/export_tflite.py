"""TFLite export: FP32 through litert-torch (no TensorFlow), FP16 and full-integer INT8 from that FP32 file with
ai-edge-quantizer, each read back with the LiteRT interpreter.

litert-torch keeps the PyTorch signature, so the file takes NCHW input unless a channel-last wrapper is
added; the layout is recorded from the interpreter's input shape, never assumed. FP16 stores convolution and
dense weights as float16 (half the file; XNNPACK computes in FP16 where the CPU has it, as on a Pi 5's A76).
INT8 is full-integer: int8 weights (per channel) and activations calibrated on the calibration images, with an
int8 input and output whose scale and zero point go into the manifest; the runtime quantizes the input from
them and the TFLite backend dequantizes the output.
"""
from __future__ import annotations

import dataclasses
import importlib
import os
import warnings
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from compile.exporters import ExportFailed, ExportedFile, ExportRequest
from edge.base.errors import UserError
from edge.base.quiet import CONVERTER_NOISE, stderr_filtered

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


def write_fp32_tflite(request: ExportRequest, path: Path) -> Path:
    litert_torch = require_converter()
    sample = torch.zeros(request.spec.shape, dtype=torch.float32)      # (1, 3, H, W) per the spec
    # The converter prints a line per pass; compile shows its own progress bar instead.
    litert_torch.config.show_progress = False
    with torch.no_grad(), warnings.catch_warnings(), stderr_filtered(CONVERTER_NOISE):
        # litert-torch 0.10 still calls a torch pytree API that torch 2.13 deprecates, once per node
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        litert_torch.convert(request.model.eval(), (sample,)).export(str(path))
    return path


def export_fp32(request: ExportRequest) -> ExportedFile:
    write_fp32_tflite(request, request.path)
    return describe_tflite(request)


# float16 weights for the ops that hold them (ai-edge-quantizer's float casting supports these)
FP16_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "CONV_2D_TRANSPOSE")


def export_fp16(request: ExportRequest) -> ExportedFile:
    source = write_fp32_tflite(request, request.workdir / f"{request.path.stem}.fp32-source.tflite")
    config = {"weight_tensor_config": {"num_bits": 16, "dtype": "FLOAT"}, "compute_precision": "FLOAT",
              "explicit_dequantize": True}
    recipe = [{"regex": ".*", "operation": op, "algorithm_key": "float_casting", "op_config": config}
              for op in FP16_OPS]
    _quantize(source, recipe, None, request.path)
    return describe_tflite(request, quantizer="ai-edge-quantizer float casting (float16 weights)")


def export_int8(request: ExportRequest) -> ExportedFile:
    from ai_edge_quantizer import recipe as recipes

    if request.calibration is None or not len(request.calibration):
        raise UserError("tflite:int8 needs calibration images (--calibration DIR)")
    source = write_fp32_tflite(request, request.workdir / f"{request.path.stem}.fp32-source.tflite")
    try:
        _quantize(source, recipes.static_wi8_ai8(), request.calibration, request.path)
        exported = describe_tflite(request, quantizer="ai-edge-quantizer static_wi8_ai8 (min-max, int8 in and out)")
    except (ValueError, RuntimeError) as err:
        # e.g. per-channel scales on a TRANSPOSE_CONV the interpreter then refuses
        first = (str(err).strip().splitlines() or [type(err).__name__])[0].split(".Tensor")[0][:160]
        raise ExportFailed(f"ai-edge-quantizer's full-integer file does not load: {first}") from err
    return dataclasses.replace(exported, calibration_method="minmax")


def _quantize(source: Path, recipe, calibration, out: Path) -> None:
    """Runs ai-edge-quantizer on ``source`` with ``recipe``; static recipes calibrate on one image per call."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import quantizer

    with stderr_filtered(CONVERTER_NOISE), warnings.catch_warnings():
        # its calibration keeps every tensor, which the interpreter warns is for debugging: here it is the point
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors.*")
        engine = quantizer.Quantizer(str(source), recipe)
        result = None
        if calibration is not None:
            signatures = Interpreter(model_path=str(source)).get_signature_list()
            (name, signature), = signatures.items()
            (key,) = signature["inputs"]
            batches = [{key: calibration[i:i + 1]} for i in range(len(calibration))]
            result = engine.calibrate({name: batches})
        engine.quantize(result, enable_progress_report=False).export_model(str(out), overwrite=True)


def describe_tflite(request: ExportRequest, **facts) -> ExportedFile:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(request.path))
    details = interpreter.get_input_details()[0]
    output = interpreter.get_output_details()[0]
    shape = tuple(int(d) for d in details["shape"])
    spec = request.spec
    nchw = spec.shape if spec.layout in ("NCHW", "NC") else (spec.shape[0], spec.shape[3], spec.shape[1],
                                                               spec.shape[2])
    nhwc = (nchw[0], nchw[2], nchw[3], nchw[1]) if len(nchw) == 4 else None
    if spec.layout == "NC" and shape == nchw:
        layout = "NC"                                 # a latent vector: nothing to lay out
    elif shape == nchw:
        layout = "NCHW"
    elif shape == nhwc:
        layout = "NHWC"
    else:
        raise UserError(f"{request.path}: TFLite input shape {shape} matches neither {nchw} (NCHW) nor {nhwc} (NHWC)")
    outputs = tuple(o["name"] for o in interpreter.get_output_details())
    return ExportedFile(path=request.path, input_name=details["name"], input_shape=shape, input_layout=layout,
                        output_names=outputs, details={"converter": f"litert-torch {version('litert-torch')}", **facts},
                        input_dtype=np.dtype(details["dtype"]).name, input_quantization=_quantization(details),
                        output_dtype=np.dtype(output["dtype"]).name, output_quantization=_quantization(output))


def _quantization(details: dict) -> tuple[float, int] | None:
    """(scale, zero point) of an integer tensor, None for a float one."""
    if not np.issubdtype(np.dtype(details["dtype"]), np.integer):
        return None
    scale, zero_point = details["quantization"]
    return float(scale), int(zero_point)
