"""A label every face folder has without annotation: which way the head is turned, read from the runtime detector's
key points. The conditional GAN is trained on it, and the same reading checks its samples afterwards.

On an aligned crop the eyes sit at fixed places, so the nose tip's horizontal offset from the eyes' midpoint, in
inter-ocular distances, says how far the head is turned: on aligned faces80 crops its quartiles are -0.11 and
+0.09, so +-0.1 splits them about 28 / 44 / 28 %.
"""
from __future__ import annotations

import numpy as np

POSES = ("turned to image left", "frontal", "turned to image right")
TURN = 0.1                  # nose offset, in inter-ocular distances, beyond which a face counts as turned
MIN_SCORE = 0.5


def nose_offset(keypoints: np.ndarray) -> float:
    """The nose tip's horizontal offset from the eyes' midpoint, in inter-ocular distances (negative: image left)."""
    eyes = (keypoints[0] + keypoints[1]) / 2
    return float((keypoints[2, 0] - eyes[0]) / max(np.linalg.norm(keypoints[1] - keypoints[0]), 1e-6))


def pose_class(offset: float) -> int:
    return 0 if offset < -TURN else 2 if offset > TURN else 1


def read_poses(images: list[np.ndarray] | np.ndarray, detector=None) -> np.ndarray:
    """Each face's pose class (index into POSES), -1 where the detector finds no face scoring ``MIN_SCORE``."""
    if detector is None:
        from edge.faces.packaged_detector import load_packaged_detector

        detector = load_packaged_detector()
    labels = []
    for image in images:
        found = [d for d in detector.detect(image) if d.score >= MIN_SCORE]
        labels.append(pose_class(nose_offset(max(found, key=lambda d: d.score).keypoints)) if found else -1)
    return np.asarray(labels, np.int64)


def mirrored(labels: np.ndarray) -> np.ndarray:
    """The pose classes of the mirror images: left and right swap."""
    return np.where(labels >= 0, len(POSES) - 1 - labels, labels)
