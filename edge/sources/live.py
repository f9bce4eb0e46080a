"""Live cameras behind one newest-frame grabber.

A thread reads the device as fast as it delivers into a one-slot buffer, stamping each frame with its capture
time; ``read(timeout)`` hands out the newest frame not yet handed out, or None after ``timeout``. A frame
overwritten before anyone read it is counted as dropped, never queued, so the kiosk always sees the present. A
device that stops delivering is closed and reopened with exponential backoff (capped) for as long as the source
is open; ``status()`` says what is happening, for the page, ``/metrics`` and the watchdog.
"""
from __future__ import annotations

import abc
import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from edge.base.errors import UserError
from edge.sources.base import Frame, FrameSource

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 10.0
HUNG_AFTER_S = MAX_BACKOFF_S + 5.0   # a grabber silent this long (a read that never returns) is hung
FAILED_READS = 5             # consecutive failed grabs after which a device counts as gone and is reopened


class Device(abc.ABC):
    """One camera driver: what the grabber thread calls, and nothing else."""

    name: str = ""

    @abc.abstractmethod
    def open(self) -> None:
        """Acquires the camera; raises OSError (or a subclass) when it is not there right now, UserError when it
        can never work here (a missing runtime, a bad pipeline)."""

    @abc.abstractmethod
    def grab(self) -> tuple[np.ndarray, np.ndarray | None] | None:
        """The next (image for detection, image for display or None), blocking until the camera delivers; None
        when the read failed."""

    @abc.abstractmethod
    def close(self) -> None:
        """Releases the camera; safe to call twice."""


@dataclass
class CameraStatus:
    state: str              # "connecting" | "streaming" | "reconnecting" | "closed"
    captured: int
    dropped: int            # captured frames overwritten before they were read
    reconnects: int
    last_error: str
    next_attempt_s: float   # seconds until the next reconnection attempt (0 while streaming)


class LiveSource(FrameSource):
    """A camera URI with a device; ``open`` waits for the first frame through ``retries`` attempts, after which
    losses are retried without end while the source stays open. ``clock`` (monotonic) stamps frames and times a hung
    read; ``sleep(seconds)`` waits out each backoff (by default on the stop event, so that ``close`` cuts it short)."""

    def __init__(self, uri: str, device: Device, retries: int = 5, backoff_s: float = 0.5, clock=time.monotonic,
                 sleep=None):
        super().__init__(uri)
        if retries < 1 or backoff_s <= 0:
            raise UserError(f"{uri}: retries must be at least 1 and backoff_s above 0")
        self.device = device
        self.retries, self.backoff_s = retries, backoff_s
        self._clock = clock
        self._slot: tuple[np.ndarray, np.ndarray | None, float] | None = None
        self._fresh = False
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self._thread: threading.Thread | None = None
        self._index = 0
        self._status = CameraStatus("connecting", 0, 0, 0, "", 0.0)
        self._last_activity = clock()

    def open(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"camera {self.name}", daemon=True)
        self._thread.start()
        with self._changed:
            while self._status.captured == 0 and self._thread.is_alive():
                if self._status.reconnects >= self.retries:
                    break
                self._changed.wait(0.1)
        if self._status.captured == 0:
            error = self._status.last_error
            self.close()
            raise UserError(f"camera {self.name} gave no frame after {self.retries} attempts ({error}); check the "
                            f"cable and that no other program holds it")

    def working(self) -> bool:
        return (self._thread is not None and self._thread.is_alive()
                and self._clock() - self._last_activity < HUNG_AFTER_S)

    def status(self) -> CameraStatus:
        with self._changed:
            return CameraStatus(**vars(self._status))

    def read(self, timeout: float = 1.0) -> Frame | None:
        """The newest frame not yet read, or None after ``timeout`` seconds (the camera is lost or slow)."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._fresh or self._stop.is_set(), timeout):
                return None
            if not self._fresh:
                return None
            image, display, captured_at = self._slot
            self._fresh = False
        frame = Frame(image, self._index, captured_at, display=display, arrived_s=captured_at)
        self._index += 1
        return frame

    def close(self) -> None:
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)     # a read in progress finishes; one that hangs is cut off below
        self.device.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        self._status.state = "closed"

    def _run(self) -> None:
        delay = self.backoff_s
        while not self._stop.is_set():
            self._last_activity = self._clock()
            if not self._connect():
                self._wait_before_retry(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)
                continue
            delay = self.backoff_s
            self._stream()
            self.device.close()

    def _connect(self) -> bool:
        try:
            self.device.open()
        except OSError as err:
            self._note_failure(f"cannot open: {err}")
            return False
        except UserError as err:          # will never work: stop trying, say why
            self._note_failure(str(err))
            self._stop.set()
            return False
        with self._changed:
            self._status.state, self._status.next_attempt_s = "streaming", 0.0
        return True

    def _stream(self) -> None:
        failures = 0
        while not self._stop.is_set():
            grabbed = self.device.grab()
            self._last_activity = self._clock()
            if grabbed is None:
                failures += 1
                if failures >= FAILED_READS:
                    self._note_failure(f"no frame in {FAILED_READS} reads")
                    return
                continue
            failures = 0
            with self._changed:
                self._status.dropped += self._fresh
                self._slot = (grabbed[0], grabbed[1], self._clock())
                self._fresh = True
                self._status.captured += 1
                self._changed.notify_all()

    def _note_failure(self, error: str) -> None:
        with self._changed:
            self._status.reconnects += 1
            self._status.last_error = error
            self._status.state = "reconnecting" if self._status.captured else "connecting"
            self._changed.notify_all()
        log.warning("camera %s: %s (attempt %d)", self.name, error, self._status.reconnects)

    def _wait_before_retry(self, delay: float) -> None:
        with self._changed:
            self._status.next_attempt_s = delay
        self._last_activity = self._clock() + delay      # waiting out a backoff is not hanging
        self._sleep(delay)                    # sleeps, never spins; by default wakes at once on close
