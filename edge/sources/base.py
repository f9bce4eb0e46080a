"""The frame-source interface."""
from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field

import numpy as np

from edge.sources.uri import redact

# The time base of sources that carry none (an image folder, a video whose container states no usable frame rate):
# their frames are stamped as if taken at this rate, so tracking in time works as on a camera.
ASSUMED_FPS = 30.0


@dataclass
class Frame:
    image: np.ndarray          # BGR uint8 HxWx3
    index: int                 # 0-based frame number from this source
    time_s: float              # capture time (monotonic for cameras, position for files)
    truth: dict | None = None  # ground truth when the source knows it (synthetic), e.g. {"identity": "id0042"}
    display: np.ndarray | None = None   # a larger image of the same instant for the page (picamera2's main stream)
    # monotonic time at which the frame was captured (cameras) or read (files): how old the kiosk's view is
    arrived_s: float = field(default_factory=time.monotonic)


class FrameSource(abc.ABC):
    def __init__(self, uri: str):
        self.uri = uri
        self.name = redact(uri)      # what messages show: never a password
        self.ended = False

    @abc.abstractmethod
    def open(self) -> None:
        """Acquires the device or file; raises UserError when it cannot."""

    @abc.abstractmethod
    def read(self) -> Frame | None:
        """The next frame, or None on a timeout or at the end (then ``ended`` is True)."""

    def close(self) -> None:
        """Releases the device or file."""

    def working(self) -> bool:
        """Whether the source is still doing its job (a live camera's grabber is reading or retrying, not hung);
        the systemd watchdog is fed only while it is."""
        return True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self):
        while not self.ended:
            frame = self.read()
            if frame is not None:
                yield frame
