"""How far a face's movement between two looks is from that of a flat picture (the ``planar`` liveness check's
measurement), from the face mesh's landmarks (``look_pair``) or from image points tracked on the face itself
(``tracked_pair``).

A photo on paper or a screen is a plane: however it is held, tilted or moved, one homography maps its points in
one look onto the next. A head is not: as it turns, the nose moves against the cheeks and jaw (parallax), and no
homography explains that. Between two looks' dense landmarks (edge.faces.face_mesh) this measures

- ``motion``: what the best similarity (shift, turn, scale) leaves unexplained: how much the view changed at all
  (two looks from the same view say nothing either way);
- ``parallax``: what the best homography leaves unexplained: near zero for a plane, whatever its motion.

Both are root mean square distances over the points, over the distance between the eyes (so they do not depend
on how large the face is in the frame); ``tracked_pair`` divides by the face box's width instead.

The mesh is not equivariant under perspective: it reads a strongly tilted photo of a face as a turned head, so its
landmarks move non-homographically even on paper. Points tracked on the image (corners followed by pyramidal
Lucas-Kanade, kept only when tracking back lands where they started) are carried by a plane exactly.
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
    return _unexplained(a, b, eyes)


def _unexplained(a: np.ndarray, b: np.ndarray, scale: float) -> LookPair:
    """What the best similarity and the best homography (both least squares over every point) leave of a -> b."""
    similarity = similarity_transform(a, b).astype(np.float64)     # Umeyama, as the aligner fits
    homography, _ = cv2.findHomography(a, b, 0)
    return LookPair(_rms(cv2.transform(a[None], similarity)[0] - b) / scale,
                    _rms(cv2.perspectiveTransform(a[None], homography)[0] - b) / scale)


def _rms(residual: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.sum(residual ** 2, axis=1))))


TRACKED_POINTS = 200      # corners sought in the face box of the first look
MIN_TRACKED = 12          # fewer points followed both ways than this: no measurement
ROUND_TRIP_PX = 0.5       # a point is kept when tracking it back lands this close to where it started


def tracked_pair(first: np.ndarray, second: np.ndarray, box: np.ndarray) -> LookPair | None:
    """Motion and parallax of image corners inside ``box`` (the face in ``first``, x1 y1 x2 y2) followed into
    ``second`` (both BGR or both grey, one size), over the box's width; None when too few corners could be followed
    there and back."""
    grey_a, grey_b = (image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
                      for image in (first, second))
    x1, y1, x2, y2 = np.round(box).astype(int)
    mask = np.zeros_like(grey_a)
    mask[max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)] = 255
    start = cv2.goodFeaturesToTrack(grey_a, TRACKED_POINTS, 0.01, 2, mask=mask)
    if start is None or len(start) < MIN_TRACKED:
        return None
    flow = {"winSize": (15, 15), "maxLevel": 3}
    there, found, _ = cv2.calcOpticalFlowPyrLK(grey_a, grey_b, start, None, **flow)
    back, found_back, _ = cv2.calcOpticalFlowPyrLK(grey_b, grey_a, there, None, **flow)
    kept = (found[:, 0] == 1) & (found_back[:, 0] == 1) & (np.linalg.norm(back - start, axis=2)[:, 0] < ROUND_TRIP_PX)
    if kept.sum() < MIN_TRACKED:
        return None
    a, b = start[kept, 0].astype(np.float64), there[kept, 0].astype(np.float64)
    return _unexplained(a, b, float(x2 - x1))

