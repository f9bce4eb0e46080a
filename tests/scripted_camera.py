"""A camera whose frames and outages follow a script, on a clock the test owns (for the kiosk loop's tests)."""
from __future__ import annotations

from edge.sources.base import Frame, FrameSource


class Clock:
    """A monotonic clock that moves only when a test (or the scripted camera) moves it."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ScriptedCamera(FrameSource):
    """An image in the script is a frame 1/30 s after the last; a number is a read that timed out after the camera
    delivered nothing for that many seconds. Frames are stamped with ``clock`` as captured ``delay_s`` before the
    loop reads them (a backlog in the camera's pipeline)."""

    def __init__(self, script, clock: Clock, delay_s: float = 0.0):
        super().__init__("scripted://")
        self.script, self.clock, self.delay_s, self.index = list(script), clock, delay_s, 0

    def open(self) -> None:
        pass

    def read(self) -> Frame | None:
        if not self.script:
            self.ended = True
            return None
        item = self.script.pop(0)
        if isinstance(item, float):
            self.clock.now += item
            return None
        self.clock.now += 1 / 30
        self.index += 1
        captured = self.clock.now - self.delay_s
        return Frame(item, self.index - 1, captured, arrived_s=captured)
