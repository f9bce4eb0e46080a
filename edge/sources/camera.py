"""USB cameras through V4L2 (OpenCV). A camera that is missing at start is retried with backoff."""
from __future__ import annotations

import logging
import time
from urllib.parse import urlparse

import cv2

from edge.errors import UserError
from edge.sources.base import Frame, FrameSource
from edge.sources.uri import uri_options

log = logging.getLogger(__name__)
DEFAULTS = {"width": 640, "height": 480, "retries": 5, "backoff_s": 0.5}


class V4L2Source(FrameSource):
    """``v4l2:///dev/video0?width=640&height=480``; ``read`` returns None when the camera gives no frame."""

    def __init__(self, uri: str):
        super().__init__(uri)
        self.device = urlparse(uri).path or "/dev/video0"
        self.options = uri_options(uri, DEFAULTS)
        self._capture = None
        self._index = 0

    def open(self) -> None:
        delay = self.options["backoff_s"]
        for attempt in range(1, self.options["retries"] + 1):
            capture = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
            if capture.isOpened():
                capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.options["width"])
                capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.options["height"])
                capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)   # keep latency low: do not queue stale frames
                self._capture = capture
                return
            capture.release()
            if attempt < self.options["retries"]:
                log.warning("camera %s not available (attempt %d/%d), retrying in %.1fs",
                            self.device, attempt, self.options["retries"], delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
        raise UserError(f"camera {self.device} could not be opened after {self.options['retries']} attempts; "
                        f"check the cable and that no other program holds it (v4l2-ctl --list-devices)")

    def read(self) -> Frame | None:
        ok, image = self._capture.read()
        if not ok:
            return None
        frame = Frame(image, self._index, time.monotonic())
        self._index += 1
        return frame

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
