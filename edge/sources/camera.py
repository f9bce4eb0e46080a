"""Live cameras read through OpenCV: USB (V4L2), network (RTSP) and the Jetson's CSI sensors (GStreamer).

Each is a ``Device`` behind ``edge.sources.live.LiveSource``: the newest frame, never a backlog, and a camera that
goes away is reopened with backoff while the kiosk keeps running.
"""
from __future__ import annotations

import os
import re
from urllib.parse import urlparse

import cv2

from edge.base.errors import UserError
from edge.base.flags import choice_of, count, positive, side
from edge.sources.live import Device, LiveSource
from edge.sources.uri import uri_options

CAMERA_OPTIONS = {"width": (640, side), "height": (480, side), "retries": (5, count), "backoff_s": (0.5, positive)}
CSI_OPTIONS = {"width": (1280, side), "height": (720, side), "fps": (30, count), "flip": (0, choice_of(*range(8))),
               "retries": (5, count), "backoff_s": (0.5, positive)}          # flip: nvvidconv's flip-method, 0-7
# RTSP over TCP (UDP loses packets on busy networks and smears frames) and a 5 s socket timeout, so a camera that
# went away is noticed and reopened instead of blocking a read for ffmpeg's default of minutes.
RTSP_FFMPEG_OPTIONS = "rtsp_transport;tcp|timeout;5000000"
JETSON_OPENCV = ("csi:// needs OpenCV built with GStreamer, which the pip wheel lacks: on JetPack use the system "
                 "OpenCV (sudo apt install python3-opencv; create the venv with --system-site-packages and pip "
                 "uninstall opencv-python-headless); see the README's Jetson install")


class OpenCVDevice(Device):
    """``cv2.VideoCapture(target, api)`` with capture properties set after opening."""

    def __init__(self, target: str, api: int, properties: dict[int, float] | None = None):
        self.target, self.api, self.properties = target, api, properties or {}
        self.name = target
        self._capture = None

    def open(self) -> None:
        capture = cv2.VideoCapture(self.target, self.api)
        if not capture.isOpened():
            capture.release()
            raise OSError(f"{self.name} is not available")
        for key, value in self.properties.items():
            capture.set(key, value)
        self._capture = capture

    def grab(self):
        ok, image = self._capture.read()
        return (image, None) if ok and image is not None else None

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


def v4l2_source(uri: str) -> LiveSource:
    """``v4l2:///dev/video0?width=640&height=480&retries=5&backoff_s=0.5``: a USB camera."""
    options = uri_options(uri, CAMERA_OPTIONS)
    device = urlparse(uri).path or "/dev/video0"
    properties = {cv2.CAP_PROP_FRAME_WIDTH: options["width"], cv2.CAP_PROP_FRAME_HEIGHT: options["height"],
                  cv2.CAP_PROP_BUFFERSIZE: 1}
    return LiveSource(uri, OpenCVDevice(device, cv2.CAP_V4L2, properties), options["retries"], options["backoff_s"])


def rtsp_source(uri: str) -> LiveSource:
    """``rtsp://user:password@camera/stream``: the URL goes to ffmpeg as it is (its query belongs to the camera)."""
    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", RTSP_FFMPEG_OPTIONS)
    source = LiveSource(uri, OpenCVDevice(uri, cv2.CAP_FFMPEG), CAMERA_OPTIONS["retries"][0],
                        CAMERA_OPTIONS["backoff_s"][0])
    source.device.name = source.name
    return source


def csi_pipeline(sensor: int, width: int, height: int, fps: int, flip: int) -> str:
    """nvarguscamerasrc -> NVMM -> nvvidconv -> BGR appsink that keeps only the newest buffer."""
    return (f"nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM),width={width},height={height},"
            f"framerate={fps}/1 ! nvvidconv flip-method={flip} ! video/x-raw,format=BGRx ! videoconvert ! "
            f"video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false")


def has_gstreamer() -> bool:
    return re.search(r"GStreamer:\s+YES", cv2.getBuildInformation()) is not None


def csi_source(uri: str) -> LiveSource:
    """``csi://0?width=1280&height=720&fps=30&flip=0``: a Jetson CSI sensor through GStreamer."""
    options = uri_options(uri, CSI_OPTIONS)
    sensor = urlparse(uri).netloc or "0"
    if not sensor.isdigit():
        raise UserError(f"{uri}: the sensor is a number, e.g. csi://0")
    if not has_gstreamer():
        raise UserError(JETSON_OPENCV)
    pipeline = csi_pipeline(int(sensor), options["width"], options["height"], options["fps"], options["flip"])
    return LiveSource(uri, OpenCVDevice(pipeline, cv2.CAP_GSTREAMER), options["retries"], options["backoff_s"])
