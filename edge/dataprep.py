"""Aligning a folder of face photos into canonical 112x112 crops, with the runtime's own detector.

Training data is aligned by the same detector and template that the runtime uses on camera frames, so the
verifier learns exactly the crops it will see on the board.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
from tqdm import tqdm

from edge.align import align_face
from edge.imageio import list_images, read_image


@dataclass
class AlignStats:
    images: int = 0
    aligned: int = 0
    unreadable: int = 0
    no_face: int = 0

    def summary(self) -> str:
        return (f"aligned {self.aligned} of {self.images} images "
                f"({self.no_face} without a detected face, {self.unreadable} unreadable, all skipped)")


def largest(detections):
    """The detection with the largest box: at a kiosk, the person nearest the camera."""
    return max(detections, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]), default=None)


def align_folder(src: str | Path, dst: str | Path, detector, size: int = 112, progress: bool = True) -> AlignStats:
    """Mirrors ``src`` into ``dst`` (same relative paths, .png) holding the aligned largest face of each image."""
    src, dst = Path(src), Path(dst)
    stats = AlignStats()
    paths = list_images(src)
    for path in tqdm(paths, desc="align", unit="img", disable=not progress):
        stats.images += 1
        image = read_image(path)
        if image is None:
            stats.unreadable += 1
            continue
        face = largest(detector.detect(image))
        if face is None:
            stats.no_face += 1
            continue
        out = (dst / path.relative_to(src)).with_suffix(".png")
        out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out), align_face(image, face.keypoints, size))
        stats.aligned += 1
    return stats
