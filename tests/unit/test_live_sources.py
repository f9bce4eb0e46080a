"""Live cameras: the newest-frame grabber, reconnection with backoff, and each board's camera URI, with fake
devices standing in for hardware this machine does not have."""
import sys
import threading
import time
import types

import numpy as np
import pytest

from edge.runtime.boards import board_names, load_board
from edge.base.errors import UserError
from edge.sources import SOURCES, open_source, source_scheme
from edge.sources.camera import csi_pipeline
from edge.sources.uri import redact
from edge.sources.live import Device, LiveSource

pytestmark = pytest.mark.unit


class FakeCamera(Device):
    """Delivers numbered frames every ``period`` seconds; ``unplug()`` makes reads and opens fail until
    ``plug()``; counts every call so a test can see there is no busy loop."""

    def __init__(self, period=0.005, present=True):
        self.period, self.present = period, present
        self.count, self.grabs, self.opens = 0, 0, 0
        self.lock = threading.Lock()

    def open(self):
        self.opens += 1
        if not self.present:
            raise OSError("unplugged")

    def grab(self):
        self.grabs += 1
        time.sleep(self.period)
        if not self.present:
            return None
        with self.lock:
            self.count += 1
            return np.full((4, 4, 3), self.count % 256, np.uint8), None

    def close(self):
        pass


def wait_until(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_reads_get_the_newest_frame_and_frames_nobody_read_are_counted_dropped():
    camera = FakeCamera()
    with LiveSource("fake://0", camera, retries=2, backoff_s=0.01) as source:
        source.open()
        first = source.read(timeout=1.0)
        time.sleep(0.1)                                        # the camera delivers ~20 frames meanwhile
        newest = source.read(timeout=1.0)
        assert newest.index == first.index + 1 and int(newest.image[0, 0, 0]) > int(first.image[0, 0, 0]) + 5
        status = source.status()
        assert status.state == "streaming" and status.dropped >= 5 and status.captured >= status.dropped
        assert newest.time_s >= first.time_s


def test_an_unplugged_camera_is_retried_with_backoff_without_spinning_and_comes_back():
    camera = FakeCamera()
    with LiveSource("fake://0", camera, retries=2, backoff_s=0.05) as source:
        source.open()
        camera.present = False
        wait_until(lambda: source.status().state == "reconnecting")
        source.read(timeout=0.2)                     # at most the one frame grabbed before the unplug
        assert source.read(timeout=0.2) is None      # then nothing new arrives
        grabs, opens = camera.grabs, camera.opens
        time.sleep(0.5)
        assert camera.grabs == grabs and camera.opens - opens <= 4      # backoff 0.05, 0.1, 0.2, ...: no spin
        assert source.status().reconnects >= 2 and "unplugged" in source.status().last_error
        camera.present = True
        wait_until(lambda: source.status().state == "streaming")
        assert source.read(timeout=1.0) is not None


def test_a_camera_missing_at_start_is_refused_after_its_retries_in_one_line():
    camera = FakeCamera(present=False)
    source = LiveSource("fake://0", camera, retries=3, backoff_s=0.01)
    with pytest.raises(UserError, match=r"camera fake://0 gave no frame after 3 attempts \(cannot open: unplugged\)"):
        source.open()
    assert source.status().state == "closed"


def test_read_times_out_with_none():
    camera = FakeCamera(period=0.5)
    with LiveSource("fake://0", camera, retries=2, backoff_s=0.01) as source:
        source.open()
        source.read(timeout=2.0)
        started = time.monotonic()
        assert source.read(timeout=0.1) is None and time.monotonic() - started < 0.4


def test_every_board_default_camera_is_a_known_source():
    for name in board_names():
        scheme = source_scheme(load_board(name).camera)
        SOURCES.target(scheme)                                   # an unknown scheme raises


def test_csi_needs_opencv_with_gstreamer_and_builds_the_argus_pipeline(monkeypatch):
    from edge.sources import camera

    monkeypatch.setattr(camera, "has_gstreamer", lambda: False)
    with pytest.raises(UserError, match="csi:// needs OpenCV built with GStreamer"):
        open_source("csi://0")
    pipeline = csi_pipeline(1, 1280, 720, 30, 2)
    assert pipeline.startswith("nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM),width=1280,height=720")
    assert "flip-method=2" in pipeline and pipeline.endswith("appsink drop=true max-buffers=1 sync=false")
    with pytest.raises(UserError, match="the sensor is a number"):
        open_source("csi://front")


def test_an_rtsp_password_never_reaches_logs():
    assert redact("rtsp://door:s3cret@10.0.0.7:554/stream1") == "rtsp://door:***@10.0.0.7:554/stream1"
    assert redact("rtsp://10.0.0.7/stream1") == "rtsp://10.0.0.7/stream1"


def test_picam_without_picamera2_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(UserError, match="picam:// needs picamera2 from Raspberry Pi OS"):
        open_source("picam://0?retries=1")


def test_picam_detects_on_the_low_resolution_stream_and_displays_the_main_one(monkeypatch):
    configured = {}

    class Request:
        def make_array(self, name):
            if name == "main":
                return np.zeros((720, 1280, 3), np.uint8)
            return np.full((360 * 3 // 2, 640), 128, np.uint8)        # YUV420: grey

        def release(self):
            configured["released"] = configured.get("released", 0) + 1

    class Picamera2:
        def __init__(self, index):
            configured["index"] = index

        def create_video_configuration(self, main, lores, queue):
            configured.update(main=main, lores=lores, queue=queue)
            return "config"

        def configure(self, config):
            pass

        def start(self):
            pass

        def capture_request(self):
            time.sleep(0.005)
            return Request()

        def stop(self):
            pass

        def close(self):
            pass

    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=Picamera2))
    with open_source("picam://1?width=1280&height=720&lores_width=640&lores_height=360") as source:
        frame = source.read(timeout=2.0)
    assert configured["index"] == 1 and configured["queue"] is False and configured["released"] >= 1
    assert configured["main"] == {"size": (1280, 720), "format": "RGB888"}
    assert frame.image.shape == (360, 640, 3) and frame.display.shape == (720, 1280, 3)
    assert abs(int(frame.image[0, 0, 0]) - 128) <= 2


def test_edge_run_on_an_rtsp_camera_never_shows_its_password(monkeypatch, capfd, caplog, verify_bundle, tmp_path):
    """The camera refuses (nothing listens): every attempt is logged and the run fails, without the password."""
    from edge.commands.cli import main
    from edge.sources import camera

    monkeypatch.setitem(camera.CAMERA_OPTIONS, "retries", 2)
    monkeypatch.setitem(camera.CAMERA_OPTIONS, "backoff_s", 0.05)
    from edge.faces.pipeline import open_pipeline

    open_pipeline(verify_bundle, gallery_path=tmp_path / "g.db", create_gallery=True).close()
    uri = "rtsp://door:s3cret-pw@127.0.0.1:9/stream1"
    assert main(["run", "--bundle", str(verify_bundle), "--source", uri, "--gallery", str(tmp_path / "g.db")]) == 2
    printed = capfd.readouterr()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "rtsp://door:***@127.0.0.1:9/stream1" in printed.err + logged
    assert "s3cret-pw" not in printed.out + printed.err + logged
    assert redact("rtsp://tok@cam/x") == "rtsp://tok@cam/x" and redact("rtsp://a:p@ss@c:99999/x") == "rtsp://a:***@c:99999/x"
