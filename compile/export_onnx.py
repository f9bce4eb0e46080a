"""ONNX export with the legacy TorchScript exporter, simplified with onnxslim, plus FP16 conversion.

The legacy exporter (``dynamo=False``) honours any ``opset_version`` a board asks for (older TensorRT parsers
need low opsets) and writes one self-contained file; the dynamo exporter writes opset 18+ and side data files.
onnxslim then folds what the exporter leaves (dlib's ResNet: 160 nodes to 85, the zero-fill pads and their
slices), at the same opset; every later file (FP16, INT8) starts from the simplified graph.
"""
from __future__ import annotations

import warnings
from importlib.metadata import version as _version
from pathlib import Path

import onnx
import torch

from compile.exporters import ExportedFile, ExportRequest
from edge.base.errors import UserError


def write_fp32_onnx(request: ExportRequest, path: Path) -> Path:
    """Exports the model with a dynamic batch axis and checks the graph; a model that is not a torch module
    (``compile.detectors.TfliteGraph``) writes its own."""
    if hasattr(request.model, "write_onnx"):
        request.model.write_onnx(path, request.opset)
        onnx.checker.check_model(str(path))
        return path
    sample = torch.zeros(request.spec.shape, dtype=torch.float32)       # (1, 3, H, W) per the spec
    input_name = request.spec.name
    with torch.no_grad(), warnings.catch_warnings():
        # The legacy exporter warns that it is deprecated on every call; choosing it is deliberate (see above).
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        # Constant pads (dlib's zero-fill adds) leave a step -1 Slice the exporter will not fold; onnxruntime's
        # optimiser folds it when the session loads, so the warning says nothing about the file's correctness.
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        try:
            torch.onnx.export(
                request.model, (sample,), str(path), dynamo=False, opset_version=request.opset,
                input_names=[input_name], output_names=[request.output_name],
                dynamic_axes={input_name: {0: "batch"}, request.output_name: {0: "batch"}},
                do_constant_folding=True,
            )
        except torch.onnx.errors.UnsupportedOperatorError as err:
            # the exporter's message runs on with the whole graph; its first line names the operator and opset
            raise UserError(f"the model cannot be exported at ONNX opset {request.opset}, the board's onnx_opset: "
                            f"{str(err).splitlines()[0]}") from err
    simplify(path)
    onnx.checker.check_model(str(path))
    return path


def simplify(path: Path) -> None:
    """Rewrites the file with onnxslim's folding (same opset, same names, dynamic batch kept)."""
    import onnxslim

    onnx.save(onnxslim.slim(onnx.load(str(path))), str(path))


def describe_onnx(path: Path, layout: str, **details) -> ExportedFile:
    """Reads the input and output names back from the file; the batch axis is dynamic, recorded as 1."""
    graph = onnx.load(str(path), load_external_data=False).graph
    image = image_input(graph)
    shape = (1,) + tuple(d.dim_value for d in image.type.tensor_type.shape.dim[1:])
    return ExportedFile(path=path, input_name=image.name, input_shape=shape, input_layout=layout,
                        output_names=tuple(o.name for o in graph.output), details=details)


def image_input(graph: onnx.GraphProto) -> onnx.ValueInfoProto:
    """The graph's first input that is not an initializer (older exporters list weights as inputs too)."""
    initializers = {init.name for init in graph.initializer}
    return next(i for i in graph.input if i.name not in initializers)


def exporter_name(request: ExportRequest) -> str:
    """What wrote the FP32 graph: torch's exporter, or the imported model's own converter."""
    return getattr(request.model, "exporter", f"torch.onnx legacy + onnxslim {_version('onnxslim')}")


def export_fp32(request: ExportRequest) -> ExportedFile:
    write_fp32_onnx(request, request.path)
    return describe_onnx(request.path, request.spec.layout, opset=request.opset, exporter=exporter_name(request))


def export_fp16(request: ExportRequest) -> ExportedFile:
    """FP16 weights and arithmetic with float32 input/output, so preprocessing is unchanged."""
    from onnxconverter_common import float16

    fp32_path = write_fp32_onnx(request, request.workdir / f"{request.path.stem}.fp32-source.onnx")
    model = onnx.load(str(fp32_path))
    # Stale intermediate type annotations make the converter cast a blocked op's (Resize) output to float32 while the
    # annotation says float16, which onnxruntime refuses; they are optional, so they go.
    model.graph.ClearField("value_info")
    model16 = float16.convert_float_to_float16(model, keep_io_types=True)
    onnx.save(model16, str(request.path))
    onnx.checker.check_model(str(request.path))
    return describe_onnx(request.path, request.spec.layout, opset=request.opset,
                         exporter=f"{exporter_name(request)} + onnxconverter-common float16 (keep_io_types)")
