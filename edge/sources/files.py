"""Finite sources: a video file and a folder of images (sorted by name)."""
from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2

from edge.base.errors import UserError
from edge.base.imageio import list_images, read_image
from edge.sources.base import ASSUMED_FPS, Frame, FrameSource

log = logging.getLogger(__name__)


def _path(uri: str) -> Path:
    return Path(uri[len("file://"):] if uri.startswith("file://") else uri)


class VideoFileSource(FrameSource):
    def __init__(self, uri: str):
        super().__init__(uri)
        self._capture = None
        self._index = 0
        self.fps = 0.0

    def open(self) -> None:
        path = _path(self.uri)
        if not path.is_file():
            raise UserError(f"video file {path} does not exist")
        self._capture = cv2.VideoCapture(str(path))
        if not self._capture.isOpened():
            raise UserError(f"OpenCV cannot decode video {path}")
        stated = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = stated if math.isfinite(stated) and stated > 0 else ASSUMED_FPS

    def read(self) -> Frame | None:
        ok, image = self._capture.read()
        if not ok:
            self.ended = True
            return None
        frame = Frame(image, self._index, self._index / self.fps)
        self._index += 1
        return frame

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()


class ImageFolderSource(FrameSource):
    """Each readable image is a frame; unreadable ones are skipped and counted in ``skipped``."""

    def __init__(self, uri: str):
        super().__init__(uri)
        self._paths: list[Path] = []
        self._next = 0
        self._index = 0
        self.skipped = 0

    def open(self) -> None:
        self._paths = list_images(_path(self.uri))
        if not self._paths:
            raise UserError(f"image folder {self.uri} holds no images")

    def read(self) -> Frame | None:
        while self._next < len(self._paths):
            path = self._paths[self._next]
            self._next += 1
            image = read_image(path)
            if image is None:
                self.skipped += 1
                continue
            frame = Frame(image, self._index, self._index / ASSUMED_FPS, {"path": str(path)})
            self._index += 1
            return frame
        self.ended = True
        return None
