"""Live cameras: the newest-frame grabber, reconnection with backoff, and each board's camera URI, with fake
devices standing in for hardware this machine does not have."""
import queue
import sys
import threading
import types

import numpy as np
import pytest

from edge.base.errors import UserError
from edge.runtime.boards import board_names, load_board
from edge.sources import SOURCES, open_source, source_scheme
from edge.sources.camera import csi_pipeline
from edge.sources.live import Device, LiveSource
from edge.sources.uri import redact

pytestmark = pytest.mark.unit


class FakeCamera(Device):
    """Delivers numbered frames as fast as they are grabbed, or, given ``frames``, only that many until the test hands
    out more (``deliver``); ``present = False`` makes reads and opens fail. Counts every call, so a test can see there
    is no busy loop."""

    def __init__(self, present=True, frames=None):
        self.present, self.frames = present, frames
        self.count, self.grabs, self.opens = 0, 0, 0
        self.grabbed = threading.Condition()

    def deliver(self, frames=None):
        """``frames`` more, or with None any number (as a test ends: a read held here would hold up closing)."""
        with self.grabbed:
            self.frames = None if frames is None else self.frames + frames
            self.grabbed.notify_all()

    def wait_for_grab(self, grabs, timeout=5.0):
        """Until the grabber asks for frame ``grabs``: the frames before it are in the source."""
        with self.grabbed:
            assert self.grabbed.wait_for(lambda: self.grabs >= grabs, timeout), "the grabber stopped asking"

    def open(self):
        self.opens += 1
        if not self.present:
            raise OSError("unplugged")

    def grab(self):
        with self.grabbed:
            self.grabs += 1
            self.grabbed.notify_all()
            self.grabbed.wait_for(lambda: self.frames != 0)
            if not self.present:
                return None
            if self.frames:
                self.frames -= 1
            self.count += 1
            return np.full((4, 4, 3), self.count % 256, np.uint8), None

    def close(self):
        pass


class Backoff:
    """The grabber's wait between attempts: hands each delay to the test and holds the grabber until the test lets
    it try again (``resume``), so the backoff is seen step by step without being waited out."""

    def __init__(self):
        self.delays, self.go = queue.Queue(), threading.Semaphore(0)

    def __call__(self, delay):
        self.delays.put(delay)
        self.go.acquire()

    def next(self) -> float:
        return self.delays.get(timeout=5.0)

    def resume(self):
        self.go.release()


def test_reads_get_the_newest_frame_and_frames_nobody_read_are_counted_dropped():
    camera = FakeCamera(frames=1)
    with LiveSource("fake://0", camera, retries=2, backoff_s=0.01) as source:
        source.open()
        first = source.read(timeout=1.0)
        camera.deliver(7)                                      # seven frames before the next read: six never read
        camera.wait_for_grab(9)
        newest = source.read(timeout=0)
        assert newest.index == first.index + 1 and int(newest.image[0, 0, 0]) == int(first.image[0, 0, 0]) + 7
        status = source.status()
        assert status.state == "streaming" and status.dropped == 6 and status.captured == 8
        assert newest.time_s >= first.time_s
        camera.deliver()


def test_an_unplugged_camera_is_retried_with_backoff_without_spinning_and_comes_back():
    camera, backoff = FakeCamera(), Backoff()
    with LiveSource("fake://0", camera, retries=2, backoff_s=0.05, sleep=backoff) as source:
        source.open()
        camera.present = False
        assert backoff.next() == 0.05
        status = source.status()
        assert status.state == "reconnecting" and status.next_attempt_s == 0.05
        source.read(timeout=0)                       # at most the one frame grabbed before the unplug
        assert source.read(timeout=0) is None        # then nothing new arrives
        grabs, opens = camera.grabs, camera.opens
        for delay in (0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0):      # doubling up to MAX_BACKOFF_S
            backoff.resume()
            assert backoff.next() == pytest.approx(delay)
        assert camera.grabs == grabs and camera.opens - opens == 9       # one attempt per wait: no spin
        assert source.status().reconnects >= 2 and "unplugged" in source.status().last_error
        camera.present = True
        backoff.resume()
        assert source.read(timeout=5.0) is not None
        assert source.status().state == "streaming"
        camera.present = False
        assert backoff.next() == 0.05                # the next loss starts the backoff over
        camera.present = True
        backoff.resume()


def test_a_camera_missing_at_start_is_refused_after_its_retries_in_one_line():
    camera = FakeCamera(present=False)
    source = LiveSource("fake://0", camera, retries=3, backoff_s=0.01)
    with pytest.raises(UserError, match=r"camera fake://0 gave no frame after 3 attempts \(cannot open: unplugged\)"):
        source.open()
    assert source.status().state == "closed"


def test_read_times_out_with_none():
    camera = FakeCamera(frames=1)
    with LiveSource("fake://0", camera, retries=2, backoff_s=0.01) as source:
        source.open()
        assert source.read(timeout=2.0) is not None
        late = threading.Timer(5.0, camera.deliver, (1,))       # a read that waited for a frame would get this one
        late.start()
        assert source.read(timeout=0.1) is None
        late.cancel()
        camera.deliver()


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

    monkeypatch.setitem(camera.CAMERA_OPTIONS, "retries", (2, camera.count))
    monkeypatch.setitem(camera.CAMERA_OPTIONS, "backoff_s", (0.05, camera.positive))
    from edge.faces.pipeline import open_pipeline

    open_pipeline(verify_bundle, gallery_path=tmp_path / "g.db", create_gallery=True).close()
    uri = "rtsp://door:s3cret-pw@127.0.0.1:9/stream1"
    assert main(["run", "--bundle", str(verify_bundle), "--source", uri, "--gallery", str(tmp_path / "g.db")]) == 2
    printed = capfd.readouterr()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "rtsp://door:***@127.0.0.1:9/stream1" in printed.err + logged
    assert "s3cret-pw" not in printed.out + printed.err + logged
    assert redact("rtsp://tok@cam/x") == "rtsp://tok@cam/x"
    assert redact("rtsp://a:p@ss@c:99999/x") == "rtsp://a:***@c:99999/x"
