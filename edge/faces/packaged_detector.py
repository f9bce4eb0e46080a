"""The packaged BlazeFace detectors (edge.runtime.packaged) as manifest entries and loaded detectors, for data
preparation and compile before any bundle exists."""
from __future__ import annotations

from pathlib import Path

from edge.faces.detect import build_detector, ssd_anchors
from edge.runtime.backends.base import BackendOptions
from edge.runtime.boards import load_board
from edge.runtime.manifest import AnchorDecode, InputSpec, ModelEntry, OutputSpec, sha256_file
from edge.runtime.models import backend_here, load_model
from edge.runtime.packaged import BLAZEFACE_KEYPOINTS, packaged_model_path, vendor_model


def detector_entry(name: str, file: str, path: Path) -> ModelEntry:
    """The manifest entry for a packaged detector file at ``path`` (stored in a bundle as ``file``)."""
    model = vendor_model(name)
    size = model.input_size
    anchors = len(ssd_anchors(size, model.strides, per_layer=model.anchors_per_layer))
    boxes, scores = model.outputs
    return ModelEntry(
        name=model.entry_name, task="detect", architecture=name, file=file, format="tflite", precision="fp32",
        inputs=(InputSpec(name="input", shape=(1, size, size, 3), layout="NHWC", dtype="float32", colour="RGB",
                          mean=(127.5, 127.5, 127.5), std=(127.5, 127.5, 127.5), crop="letterbox"),),
        outputs=(OutputSpec(boxes, (1, anchors, 16), "box centre/size + 6 key points, pixels from anchor"),
                 OutputSpec(scores, (1, anchors, 1), "face logit per anchor")),
        sha256=sha256_file(path), source_sha256=sha256_file(path),
        decode=AnchorDecode(strides=model.strides, anchors_per_layer=model.anchors_per_layer, anchor_offset=0.5,
                            score_threshold=0.5, iou_threshold=0.3, keypoints=BLAZEFACE_KEYPOINTS,
                            boxes_output=boxes, scores_output=scores),
        extra={"licence": model.licence, "package": model.distribution},
    )


def load_packaged_detector(name: str = "blazeface_short", threads: int = 2):
    """A detector straight from the installed package, for data preparation before any bundle exists."""
    path = packaged_model_path(name)
    entry = detector_entry(name, path.name, path)
    backend, _ = backend_here(entry, load_board("host"))        # the machine preparing data is the host
    return build_detector(load_model(path.parent, entry, backend, BackendOptions(threads=threads)))
