"""Is a face worth embedding? Size, pose and sharpness, each with the reason it failed.

A kiosk sees a visitor for many frames; it embeds the good ones. The measures are cheap and need only the
detector's key points and the aligned crop:

- size: the face box's height in frame pixels;
- yaw: how far the nose tip lies from the eyes' midpoint along the line between the eyes, over the eye
  distance (0 frontal; about 0.5 near profile, where the far eye starts to hide);
- sharpness: the Laplacian's energy over the intensity variance of the crop brought to 48 px, so that
  neither the camera's resolution nor the face's contrast moves it (motion blur and defocus lower it).
"""
from __future__ import annotations

import cv2
import numpy as np

from edge.faces.detect import Detection
from edge.runtime.boards import TrackingConfig

SHARPNESS_SIDE = 48


def face_yaw(keypoints: np.ndarray) -> float:
    """Signed nose offset from the eyes' midpoint, along the eye line, in eye distances (BlazeFace points)."""
    left, right, nose = keypoints[0], keypoints[1], keypoints[2]
    across = right - left
    distance = float(np.linalg.norm(across)) + 1e-6
    return float(np.dot(nose - (left + right) / 2, across / distance) / distance)


def sharpness(crop_bgr: np.ndarray) -> float:
    grey = cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2GRAY) if crop_bgr.ndim == 3 else crop_bgr
    small = cv2.resize(grey, (SHARPNESS_SIDE, SHARPNESS_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)
    inner = small[4:-4, 4:-4]                  # the crop's border may hold the black fill of a face at an edge
    edges = cv2.Laplacian(small, cv2.CV_32F)[4:-4, 4:-4]
    return float(edges.var() / (inner.var() + 1.0))


def geometry_problem(detection: Detection, config: TrackingConfig) -> str | None:
    """"small" or "turned" from the box and key points alone, before any crop is cut; None when neither."""
    if float(detection.box[3] - detection.box[1]) < config.min_face:
        return "small"
    if abs(face_yaw(detection.keypoints)) > config.max_yaw:
        return "turned"
    return None


def crop_problem(aligned_crop: np.ndarray, config: TrackingConfig) -> str | None:
    """"blurred" when the aligned crop is too soft to judge; None otherwise."""
    return "blurred" if sharpness(aligned_crop) < config.min_sharpness else None
