"""Aligning a folder of face photos (or a video's frames) into canonical 112x112 crops, with the runtime's own
detector.

Training data is aligned by the same detector and template that the runtime uses on camera frames, so the
verifier learns exactly the crops it will see on the board.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.base.errors import UserError
from edge.base.imageio import list_images, read_image
from edge.base.interrupts import complete_or_absent
from edge.base.paths import refuse_output_over_input
from edge.base.progress import progress_bar
from edge.faces.align import Aligner, largest


@dataclass
class AlignStats:
    images: int = 0
    aligned: int = 0
    unreadable: int = 0
    no_face: int = 0

    def summary(self) -> str:
        return (f"aligned {self.aligned} of {self.images} images "
                f"({self.no_face} without a detected face, {self.unreadable} unreadable, all skipped)")


SAME_PHOTO_FACE = 0.5    # a second face at least this share of the largest's height makes a photo ambiguous


def enrolment_face(detections):
    """(the face to enrol, None) or (None, why the photo is refused): no face, or several faces of similar size
    (a group photo would enrol whoever is largest without saying so)."""
    face = largest(detections)
    if face is None:
        return None, "no face found"
    height = float(face.box[3] - face.box[1])
    similar = [d for d in detections if float(d.box[3] - d.box[1]) >= SAME_PHOTO_FACE * height]
    if len(similar) > 1:
        return None, f"{len(similar)} faces: use a photo of this person alone"
    return face, None


def align_folder(src: str | Path, dst: str | Path, detector, crop: str = "arcface112", max_images: int = 0,
                 seed: int = 0, progress: bool = True) -> AlignStats:
    """Mirrors ``src`` into ``dst`` (same relative paths, .png) holding the aligned largest face of each image,
    cut as the named crop template says; with ``max_images``, a seeded sample of that many images. A video file
    as ``src`` gives one person's folder, ``dst/<video name>/frame_000123.png``, from its frames. ``dst`` appears
    whole or not at all (Ctrl+C, an error, or no face anywhere leave nothing)."""
    aligner = Aligner(crop, detector.keypoint_names)
    src, dst = Path(src), Path(dst)
    refuse_output_over_input(dst, [src])
    if not src.exists():
        raise UserError(f"--src {src} does not exist")
    stats = AlignStats()
    with complete_or_absent(dst, folder=True) as partial:
        images, count = video_frames(src, partial) if src.is_file() else folder_images(src, partial, max_images, seed)
        if count == 0:
            raise UserError(f"{src} holds no images (.jpg, .png, .pgm, ...); nothing aligned")
        for out, image in progress_bar(images, total=count, desc="align", unit="img", disable=not progress):
            stats.images += 1
            if image is None:
                stats.unreadable += 1
                continue
            chip = aligner.align_chosen(image, detector.detect(image))
            if chip is None:
                stats.no_face += 1
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out), chip)
            stats.aligned += 1
        if not stats.aligned:
            raise UserError(f"no face found in any of the {stats.images} images ({stats.unreadable} unreadable); "
                            f"nothing written")
    return stats


def folder_images(src: Path, dst: Path, max_images: int, seed: int):
    """(output path, image or None) per image under ``src``, and how many."""
    paths = list_images(src)
    if 0 < max_images < len(paths):
        chosen = np.random.default_rng(seed).choice(len(paths), max_images, replace=False)
        paths = [paths[i] for i in sorted(chosen)]
    return (((dst / path.relative_to(src)).with_suffix(".png"), read_image(path)) for path in paths), len(paths)


def video_frames(src: Path, dst: Path):
    """(output path, frame) per frame of the video ``src``, and the frame count its container states."""
    capture = cv2.VideoCapture(str(src))
    if not capture.isOpened():
        raise UserError(f"{src} is neither a folder of images nor a video OpenCV can read")
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None

    def frames():
        index = 0
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    return
                yield dst / src.stem / f"frame_{index:06d}.png", frame
                index += 1
        finally:
            capture.release()
    return frames(), count
