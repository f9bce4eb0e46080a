"""Raspberry Pi cameras through picamera2 (libcamera): the low-resolution stream for detection, the main
stream for display, both from one capture request so they show the same instant."""
from __future__ import annotations

from urllib.parse import urlparse

import cv2

from edge.base.errors import UserError
from edge.base.flags import count, positive, side
from edge.sources.live import Device, LiveSource
from edge.sources.uri import uri_options

PICAM_OPTIONS = {"width": (1280, side), "height": (720, side), "lores_width": (640, side),
                 "lores_height": (360, side), "retries": (5, count), "backoff_s": (0.5, positive)}
INSTALL = ("picam:// needs picamera2 from Raspberry Pi OS (sudo apt install python3-picamera2) in a venv made "
           "with --system-site-packages; see the README's Raspberry Pi install")


class PicameraDevice(Device):
    def __init__(self, index: int, main: tuple[int, int], lores: tuple[int, int]):
        self.index, self.main, self.lores = index, main, lores
        self.name = f"picamera2 camera {index}"
        self._camera = None

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as err:
            raise UserError(f"{INSTALL} ({err})") from err
        try:
            camera = Picamera2(self.index)
        except (IndexError, RuntimeError) as err:        # no camera at this index, or libcamera cannot reach it
            raise OSError(f"camera {self.index}: {err}") from err
        # RGB888 arrays are in B, G, R order (what OpenCV calls BGR); the lores stream must be YUV420 on a Pi 4.
        # queue=False: each request is the next frame from the sensor, not one buffered earlier.
        config = camera.create_video_configuration(main={"size": self.main, "format": "RGB888"},
                                                   lores={"size": self.lores, "format": "YUV420"}, queue=False)
        camera.configure(config)
        camera.start()
        self._camera = camera

    def grab(self):
        request = self._camera.capture_request()
        try:
            main, lores = request.make_array("main"), request.make_array("lores")
        finally:
            request.release()
        return cv2.cvtColor(lores, cv2.COLOR_YUV420p2BGR), main

    def close(self) -> None:
        if self._camera is not None:
            self._camera.stop()
            self._camera.close()
            self._camera = None


def picam_source(uri: str) -> LiveSource:
    """``picam://0?width=1280&height=720&lores_width=640&lores_height=360``."""
    options = uri_options(uri, PICAM_OPTIONS)
    index = urlparse(uri).netloc or "0"
    if not index.isdigit():
        raise UserError(f"{uri}: the camera is a number, e.g. picam://0")
    device = PicameraDevice(int(index), (options["width"], options["height"]),
                            (options["lores_width"], options["lores_height"]))
    return LiveSource(uri, device, options["retries"], options["backoff_s"])
