"""Static INT8 quantization of the FP32 ONNX file with onnxruntime (QDQ, per-channel weights).

QDQ keeps float input and output (QuantizeLinear/DequantizeLinear pairs sit inside the graph), so the manifest's
input spec and preprocessing are the FP32 ones. Weights are int8; activations are what the board config says
(``int8_activations``): uint8 (U8S8) on CPU boards, the combination onnxruntime's CPU kernels are fastest with on
x86 (VNNI) and ARM, where int8 activations leave residual joins unfused (measured in DESIGN.md); int8,
symmetric, for TensorRT; or ``auto``, both timed on the compiling machine and the faster kept.
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import onnx

from compile.export_onnx import describe_onnx, image_input, write_fp32_onnx
from compile.exporters import ExportedFile, ExportRequest
from edge.base.errors import UserError
from edge.base.timing import time_interleaved

MAX_CALIBRATION_BATCH = 16
AUTO_REPEAT = 30
# Calibration methods by name (values are onnxruntime CalibrationMethod members). MinMax is the default: fast
# and standard. Percentile scored clearly higher (cosine 0.93 vs 0.88) on a BN-recalibrated random-weight
# MobileFaceNetS, so it is offered; measure on the trained model before changing the default.
METHODS = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}


class _BatchReader:
    """onnxruntime's CalibrationDataReader protocol over a prepared calibration array, in equal batches: the
    histogram calibrators (percentile, entropy) cannot merge a ragged last batch."""

    def __init__(self, input_name: str, data: np.ndarray, max_batch: int = MAX_CALIBRATION_BATCH):
        size = max(b for b in range(1, max_batch + 1) if len(data) % b == 0)
        self._feeds = iter([{input_name: data[i:i + size]} for i in range(0, len(data), size)])

    def get_next(self):
        return next(self._feeds, None)


def export_int8(request: ExportRequest) -> ExportedFile:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if request.calibration_method not in METHODS:
        raise UserError(f"unknown calibration method {request.calibration_method!r}; valid: {', '.join(METHODS)}")
    if request.calibration is None or not len(request.calibration):
        raise UserError("onnx:int8 needs calibration images (--calibration DIR)")
    fp32_path = write_fp32_onnx(request, request.workdir / f"{request.path.stem}.fp32-source.onnx")
    # Shape inference and graph optimisation first (onnxruntime's advice): folded BatchNorms and fused ops
    # give the quantizer fewer, larger tensors to calibrate.
    prepared = request.workdir / f"{request.path.stem}.prepared.onnx"
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=False)
    activations, measured = request.int8_activations, {}
    if activations == "auto":
        activations, measured = fastest_activations(request, prepared)
    else:
        _quantize(request, prepared, activations, request.path)
    onnx.checker.check_model(str(request.path))
    exported = describe_onnx(request.path, request.spec.layout, opset=request.opset,
                             quantizer="onnxruntime quantize_static", quant_format="QDQ", per_channel=True,
                             weights="int8", activations=activations, symmetric_activations=activations == "int8",
                             **({"activations_measured_ms": measured} if measured else {}))
    return dataclasses.replace(exported, calibration_method=request.calibration_method)


def _quantize(request: ExportRequest, prepared: Path, activations: str, out: Path) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    graph = onnx.load(str(prepared), load_external_data=False).graph
    quantize_static(
        str(prepared), str(out), _BatchReader(request.spec.name, request.calibration, _batch_limit(graph)),
        nodes_to_exclude=output_heads(graph) if request.float_heads else [],
        quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8,
        calibrate_method=CalibrationMethod[METHODS[request.calibration_method]],
        # int8 activations are for TensorRT, which reads only symmetric (zero point 0) signed INT8
        extra_options={"ActivationSymmetric": activations == "int8"},
    )


def output_heads(graph: onnx.GraphProto) -> list[str]:
    """Names of the nodes between each graph output and the conv that feeds it, that conv included."""
    producers = {name: node for node in graph.node for name in node.output}
    heads, pending = [], [output.name for output in graph.output]
    while pending:
        node = producers.get(pending.pop())
        if node is None or node.name in heads:
            continue
        heads.append(node.name)
        if node.op_type != "Conv":
            pending += list(node.input)
    return heads


def _batch_limit(graph: onnx.GraphProto) -> int:
    """Calibration batches the graph takes: any up to MAX_CALIBRATION_BATCH with a dynamic batch axis, else its
    fixed batch (a converted detector graph takes one image at a time)."""
    batch = image_input(graph).type.tensor_type.shape.dim[0]
    return batch.dim_value if batch.HasField("dim_value") else MAX_CALIBRATION_BATCH


def fastest_activations(request: ExportRequest, prepared: Path) -> tuple[str, dict]:
    """``int8_activations: auto``: both activation types quantized and timed side by side here (onnxruntime,
    batch 1, interleaved, median of AUTO_REPEAT); the faster file is kept. Only meaningful on the board's own
    kind of CPU, which is why a board config says ``auto`` only for the machine that compiles (the host)."""
    import onnxruntime as ort

    files = {kind: request.workdir / f"{request.path.stem}.{kind}.onnx" for kind in ("uint8", "int8")}
    sessions = {}
    for kind, path in files.items():
        _quantize(request, prepared, kind, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.log_severity_level = 1, 3
        sessions[kind] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {request.spec.name: request.calibration[:1]}
    times = time_interleaved({kind: (lambda s=session: s.run(None, feed)) for kind, session in sessions.items()},
                             warmup=5, repeat=AUTO_REPEAT, desc="int8 activations")
    measured = {kind: round(float(np.median(values)), 4) for kind, values in times.items()}
    fastest = min(measured, key=measured.get)
    shutil.copyfile(files[fastest], request.path)
    return fastest, measured
