"""Labelled face boxes in dlib's imglab XML (``<image file=...><box top left width height [ignore]/>``).

A detection matches a labelled face when its box centre lies inside the labelled box and their heights differ by
less than 2x: detectors draw boxes differently (BlazeFace's is tighter than dlib's), so overlap thresholds would
measure box conventions rather than finding faces. Each labelled face and each detection is matched once.
"""
from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.base.errors import UserError

MAX_HEIGHT_RATIO = 2.0


@dataclass(frozen=True)
class LabelledImage:
    file: str                    # relative to the XML file's folder (or the --images folder)
    boxes: np.ndarray            # K,4 x1, y1, x2, y2 of faces to find
    ignored: np.ndarray          # J,4 boxes marked ignore='1': a detection there is neither right nor wrong


def parse_imglab(path: str | Path) -> list[LabelledImage]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"labelled-boxes file {path} does not exist")
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as err:
        raise UserError(f"labelled-boxes file {path} does not parse as XML: {err}") from err
    images = []
    for node in root.iter("image"):
        if "file" not in node.attrib:
            raise UserError(f"{path}: an <image> has no file attribute")
        boxes, ignored = [], []
        for box in node.iter("box"):
            try:
                top, left, width, height = (float(box.attrib[k]) for k in ("top", "left", "width", "height"))
            except (KeyError, ValueError) as err:
                raise UserError(f"{path}: a box of {node.attrib['file']} needs numeric top, left, width and "
                                f"height ({err})") from err
            target = ignored if box.attrib.get("ignore") == "1" else boxes
            target.append((left, top, left + width, top + height))
        images.append(LabelledImage(node.attrib["file"], np.asarray(boxes, np.float32).reshape(-1, 4),
                                    np.asarray(ignored, np.float32).reshape(-1, 4)))
    if not images:
        raise UserError(f"labelled-boxes file {path} holds no <image> elements (dlib imglab format)")
    return images


def box_matches(label: np.ndarray, box: np.ndarray) -> bool:
    """The labelled face is found by ``box``: its centre lies inside, and their heights are within the ratio."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    inside = label[0] <= cx <= label[2] and label[1] <= cy <= label[3]
    heights = sorted((float(label[3] - label[1]), float(box[3] - box[1])))
    return inside and heights[0] > 0 and heights[1] / heights[0] < MAX_HEIGHT_RATIO


def match_detections(labelled: LabelledImage, detections: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, int]:
    """(found flag per labelled face, false detections): highest-scoring detections are matched first."""
    found = np.zeros(len(labelled.boxes), bool)
    false = 0
    for index in np.argsort(-scores):
        box = detections[index]
        hit = next((k for k, label in enumerate(labelled.boxes) if not found[k] and box_matches(label, box)), None)
        if hit is not None:
            found[hit] = True
        elif not any(box_matches(label, box) for label in labelled.ignored):
            false += 1
    return found, false
