"""Face alignment: a similarity transform from detected key points to a canonical 112x112 template.

Key points, everywhere in the project, are in image order: [eye on the image's left, eye on the image's right,
nose tip, mouth centre]. BlazeFace gives exactly these (plus two ear points, unused); a 5-point source with
mouth corners (MTCNN, faces80 landmarks, the synthetic renderer) maps to them with ``five_to_four``.
"""
from __future__ import annotations

import cv2
import numpy as np

ALIGNED_SIZE = 112

# The ArcFace 112x112 template (eyes, nose tip, mouth corners), with the two mouth corners averaged into the
# mouth centre that BlazeFace predicts. Models trained on these crops match the common face-recognition layout.
TEMPLATE_112 = np.array([
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [56.1396, 92.2848],
], dtype=np.float32)


def five_to_four(points5: np.ndarray) -> np.ndarray:
    """[eye, eye, nose, mouth corner, mouth corner] -> [eye, eye, nose, mouth centre]."""
    points5 = np.asarray(points5, np.float32)
    return np.concatenate([points5[:3], points5[3:5].mean(axis=0, keepdims=True)])


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + translation mapping ``src`` onto ``dst`` (Umeyama, 1991).

    Returns a 2x3 matrix for cv2.warpAffine. A similarity (not a full affine) keeps the face's proportions,
    which carry identity; reflections are excluded.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = dst_c.T @ src_c / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rotation = u @ sign @ vt
    variance = (src_c ** 2).sum() / len(src)
    scale = (singular * np.diag(sign)).sum() / variance
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]]).astype(np.float32)


def align_face(image: np.ndarray, keypoints: np.ndarray, size: int = ALIGNED_SIZE) -> np.ndarray:
    """Warps the face whose first four key points are given onto the template, at ``size`` x ``size``."""
    template = TEMPLATE_112 * (size / ALIGNED_SIZE)
    matrix = similarity_transform(np.asarray(keypoints, np.float32)[:4], template)
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
