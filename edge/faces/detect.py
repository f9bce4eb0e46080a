"""BlazeFace face detection: letterbox -> model -> anchor decoding -> weighted non-maximum suppression.

The models (MediaPipe BlazeFace short range, 896 anchors, for faces within ~2 m of the camera; full range,
2304 anchors, for faces across a room) output, for each fixed anchor, a score and a box with six key points.
All decoding is numpy, so it runs the same on every backend and board. Where in a stream to look (whole frames,
tiles, regions around tracked faces) is ``edge.faces.scan``'s business.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge.base.errors import UserError
from edge.base.registry import Registry
from edge.runtime.models import LoadedModel


PIXEL_CENTRE = 0.5
CLOSE_UP_BORDER = 0.15   # of the longer side, added around a frame in which no face was found
LARGE_FACE = 0.4         # a face wider than this share of the frame's longer side is detected again, bordered


@dataclass(frozen=True)
class Detection:
    box: np.ndarray        # x1, y1, x2, y2 in image pixels
    score: float
    keypoints: np.ndarray  # (6, 2) pixel positions (0 = first pixel's centre): eye (image left), eye (image
                           # right), nose, mouth, ear, ear

    def shifted(self, dx: float, dy: float) -> "Detection":
        """The same face moved by (dx, dy): from a crop's pixels to the frame's when the crop starts at (dx, dy)."""
        offset = np.array([dx, dy], np.float32)
        return Detection(self.box + np.tile(offset, 2), self.score, self.keypoints + offset)

    def from_level(self, factor: int, dx: float, dy: float) -> "Detection":
        """The same face in frame pixels, found in a copy ``factor`` times smaller whose first pixel's top-left corner
        lies at (dx, dy) in the frame (edge.faces.scan.FramePyramid): the box's edges scale, the key points are
        pixel centres."""
        offset = np.array([dx, dy], np.float32)
        points = (self.keypoints + PIXEL_CENTRE) * factor - PIXEL_CENTRE
        return Detection(self.box * factor + np.tile(offset, 2), self.score, points + offset)


def ssd_anchors(input_size: int, strides: tuple[int, ...] | list[int], offset: float = 0.5,
                per_layer: int = 2) -> np.ndarray:
    """Anchor centres (N, 2) in [0, 1]; consecutive layers with the same stride share one grid.

    Each layer contributes ``per_layer`` anchors per grid cell: two in MediaPipe's SSD layout with one aspect
    ratio plus the interpolated scale, so 16x16x2 + 8x8x6 = 896 for the short-range model's strides [8,16,16,16].
    """
    centres = []
    layer = 0
    while layer < len(strides):
        same = 0
        while layer + same < len(strides) and strides[layer + same] == strides[layer]:
            same += 1
        grid = int(np.ceil(input_size / strides[layer]))
        ys, xs = np.mgrid[0:grid, 0:grid]
        cells = np.stack([(xs + offset) / grid, (ys + offset) / grid], axis=-1).reshape(-1, 1, 2)
        centres.append(np.repeat(cells, per_layer * same, axis=1).reshape(-1, 2))
        layer += same
    return np.concatenate(centres).astype(np.float32)


def letterbox(image: np.ndarray, size: int, area_below: float = 1.0) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Resizes keeping the aspect ratio and pads to size x size; returns (image, scale, (pad_x, pad_y)).

    Shrinking by more than ``area_below`` averages pixels (INTER_AREA, no aliasing); anything else is bilinear,
    which costs a seventh as much on a face region (0.04 against 0.27 ms, 250 px to 128)."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    interpolation = cv2.INTER_AREA if scale < area_below else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[pad_y:pad_y + new_h, pad_x:pad_x + new_w] = resized
    return canvas, scale, (pad_x, pad_y)


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
                 iou_threshold: float) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Merges overlapping candidates by score-weighted averaging (steadier boxes and key points than hard NMS)."""
    order = np.argsort(-scores)
    kept = []
    while order.size:
        overlap = box_iou(boxes[order[0]], boxes[order]) >= iou_threshold
        group = order[overlap]
        weights = scores[group][:, None]
        box = (boxes[group] * weights).sum(0) / weights.sum()
        points = (keypoints[group] * weights[:, :, None]).sum(0) / weights.sum()
        kept.append((box, points, float(scores[order[0]])))
        order = order[~overlap]
    return kept


class BlazeFaceDetector:
    """Finds faces in a BGR image with a BlazeFace model loaded from a bundle (or the packaged file)."""

    def __init__(self, model: LoadedModel, score_threshold: float | None = None):
        decode = model.entry.decode
        if decode is None:
            raise UserError(f"detector {model.entry.name} has no decode parameters in the manifest; recompile")
        self.model = model
        self.decode = decode
        self.size = model.entry.input.size[0]
        self.anchors = ssd_anchors(self.size, decode.strides, decode.anchor_offset, decode.anchors_per_layer)
        self.score_threshold = decode.score_threshold if score_threshold is None else score_threshold

    @property
    def keypoint_names(self) -> tuple[str, ...]:
        return self.decode.keypoints

    def detect(self, image_bgr: np.ndarray, area_below: float = 1.0) -> list[Detection]:
        """Faces in the image (``area_below``: see ``letterbox``). BlazeFace misses a face that fills the whole
        frame (129 of Yale B's 871 tight crops; none with a 15 % border) and pulls a large face's eyes inwards (8
        chip pixels on those crops), so a frame without a face is tried once more with a border, and one with a face
        wider than LARGE_FACE of the frame is detected again with the border that brings it to that size. Either
        costs a second detection, only on such frames."""
        found = self.detect_once(image_bgr, area_below)
        longer = max(image_bgr.shape[:2])
        if not found:
            return self._detect_bordered(image_bgr, int(round(CLOSE_UP_BORDER * longer)), area_below)
        widest = max(float(d.box[2] - d.box[0]) for d in found)
        if widest > LARGE_FACE * longer:
            border = int(round((widest / LARGE_FACE - longer) / 2))
            return self._detect_bordered(image_bgr, border, area_below) or found
        return found

    def _detect_bordered(self, image_bgr: np.ndarray, border: int, area_below: float) -> list[Detection]:
        padded = cv2.copyMakeBorder(image_bgr, border, border, border, border, cv2.BORDER_CONSTANT, value=0)
        return [d.shifted(-border, -border) for d in self.detect_once(padded, area_below)]

    def detect_once(self, image_bgr: np.ndarray, area_below: float = 1.0) -> list[Detection]:
        """One pass of the model over the image, without the close-up retries of ``detect`` (``area_below``: see
        ``letterbox``)."""
        boxed, scale, (pad_x, pad_y) = letterbox(image_bgr, self.size, area_below)
        outputs = self.model.run_images([boxed])
        regressors = outputs[self.decode.boxes_output][0]                  # anchors,16
        logits = outputs[self.decode.scores_output][0, :, 0]               # anchors
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -80.0, 80.0)))
        keep = scores >= self.score_threshold
        if not keep.any():
            return []
        regressors, scores, anchors = regressors[keep], scores[keep], self.anchors[keep]
        centres = anchors + regressors[:, 0:2] / self.size
        half = regressors[:, 2:4] / self.size / 2
        boxes = np.concatenate([centres - half, centres + half], axis=1)           # K,4 in [0,1]
        points = anchors[:, None, :] + regressors[:, 4:16].reshape(-1, 6, 2) / self.size  # K,6,2
        detections = []
        for box, kps, score in weighted_nms(boxes, points, scores, self.decode.iou_threshold):
            to_pixels = lambda xy: (xy * self.size - np.array([pad_x, pad_y])) / scale  # noqa: E731
            box_px = np.concatenate([to_pixels(box[:2]), to_pixels(box[2:])])
            # MediaPipe's coordinates put 0 at the image's left edge; key points are used as pixel positions
            # (OpenCV's warps, dlib's chips: 0 at the first pixel's centre), so they move half a pixel.
            points = to_pixels(kps) - PIXEL_CENTRE
            detections.append(Detection(box_px.astype(np.float32), score, points.astype(np.float32)))
        return detections


# Detector implementations by the manifest's architecture name.
DETECTORS = Registry("detector architecture", {
    "blazeface_short": "edge.faces.detect:BlazeFaceDetector",
    "blazeface_full": "edge.faces.detect:BlazeFaceDetector",
})


def build_detector(model: LoadedModel):
    """The detector class for the loaded file's architecture; an unknown one is refused with the valid names."""
    return DETECTORS.get(model.entry.architecture)(model)
