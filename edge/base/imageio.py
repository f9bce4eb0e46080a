"""Reading images and identity folders; a corrupt file is skipped and counted, never fatal."""
from __future__ import annotations

import logging
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge.base.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp", ".tif", ".tiff")
log = logging.getLogger(__name__)


def read_image(path: str | Path) -> np.ndarray | None:
    """BGR uint8 HxWx3 (grey images are expanded), or None when the file cannot be decoded. Only a regular file is
    read: a FIFO or a device would block or never end."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            log.warning("skipping %s: not a regular file", path)
            return None
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as err:
        log.warning("skipping unreadable image %s (%s)", path, err.strerror)
        return None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        log.warning("skipping unreadable image %s", path)
    return image


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder of images")
    # os.walk with followlinks: datasets are often assembled from symlinked identity folders
    return sorted(Path(top) / name for top, _, names in os.walk(folder, followlinks=True) for name in names
                  if Path(name).suffix.lower() in IMAGE_SUFFIXES)


@dataclass
class IdentityFolders:
    """``root/<identity>/<image>``, the layout real face datasets use. Paths only; images load lazily."""

    root: Path
    images: dict[str, list[Path]] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return sorted(self.images)

    def __len__(self) -> int:
        return sum(len(v) for v in self.images.values())


def scan_identity_folders(root: str | Path, min_images: int = 1) -> IdentityFolders:
    """Finds identity subfolders holding at least ``min_images`` images each."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a folder; expected root/<identity>/<image> folders")
    folders = IdentityFolders(root)
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        images = list_images(sub)
        if len(images) >= min_images:
            folders.images[sub.name] = images
    if not folders.images:
        raise UserError(f"{root} holds no identity folders with at least {min_images} images")
    return folders


FRAME_REFERENCE = re.compile(r"^(?P<video>.+)#(?P<frame>\d+)$")     # clip.mp4#90: frame 90 of a video


def frame_reference(text: str) -> tuple[Path, int] | None:
    """``clip.mp4#90`` -> (the video, 90) when the video is a file; None for anything else."""
    match = FRAME_REFERENCE.match(str(text))
    if match is None or not Path(match["video"]).is_file():
        return None
    return Path(match["video"]), int(match["frame"])


def read_photo(text: str) -> np.ndarray | None:
    """An image file, or one frame of a video named ``clip.mp4#N`` (frames count from 0); None when unreadable."""
    reference = frame_reference(text)
    if reference is None:
        return read_image(text)
    video, wanted = reference
    capture = cv2.VideoCapture(str(video))
    try:
        for _ in range(wanted):                    # read up to it: seeking is not frame-exact in every codec
            if not capture.grab():
                break
        ok, frame = capture.read()
    finally:
        capture.release()
    if not ok:
        log.warning("skipping %s: the video has no frame %d", video, wanted)
        return None
    return frame
