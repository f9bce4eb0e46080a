"""How far a face's movement between two looks is from that of a flat picture (the ``planar`` liveness check's
measurement).

A photo on paper or a screen is a plane: however it is held, tilted or moved, one homography maps its points in
one look onto the next. A head is not: as it turns, the nose moves against the cheeks and jaw (parallax), and no
homography explains that. Between two looks' dense landmarks (edge.faces.face_mesh) this measures

- ``motion``: what the best similarity (shift, turn, scale) leaves unexplained: how much the view changed at all
  (two looks from the same view say nothing either way);
- ``parallax``: what the best homography leaves unexplained: near zero for a plane, whatever its motion.

Both are root mean square distances over the points, over the distance between the eyes (so they do not depend
on how large the face is in the frame).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge.runtime.crops import similarity_transform

# the face mesh's eye-corner points (MediaPipe's indices): the outer corners span the eyes
MESH_EYE_CORNERS = (33, 263)


@dataclass(frozen=True)
class LookPair:
    motion: float       # RMS residual of the best similarity, over the eye distance
    parallax: float     # RMS residual of the best homography, over the eye distance


def look_pair(first: np.ndarray, second: np.ndarray, eye_corners: tuple[int, int] = MESH_EYE_CORNERS) -> LookPair:
    """``first`` and ``second``: (N, 2) image positions of the same N landmarks in two looks."""
    a, b = np.asarray(first, np.float64)[:, :2], np.asarray(second, np.float64)[:, :2]
    eyes = float(np.linalg.norm(b[eye_corners[0]] - b[eye_corners[1]]))
    if eyes <= 0:
        raise ValueError("the eyes coincide: not a face's landmarks")
    similarity = similarity_transform(a, b).astype(np.float64)     # least squares (Umeyama), like the aligner
    homography, _ = cv2.findHomography(a, b, 0)                  # least squares over every point
    return LookPair(_rms(cv2.transform(a[None], similarity)[0] - b) / eyes,
                    _rms(cv2.perspectiveTransform(a[None], homography)[0] - b) / eyes)


def _rms(residual: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.sum(residual ** 2, axis=1))))
