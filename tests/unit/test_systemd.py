"""The systemd unit (checked by systemd-analyze), the notify protocol, and the watchdog's idea of progress."""
import shutil
import socket
import subprocess
import threading

import numpy as np
import pytest

from edge.commands.cli import main as edge_main
from edge.kiosk.systemd import Notifier
from edge.sources import live
from edge.sources.live import Device, LiveSource
from scripted_camera import Clock

pytestmark = pytest.mark.unit


@pytest.fixture
def bundle(tmp_path):
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "manifest.json").write_text("{}")
    return folder


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_unit_is_a_valid_notify_service_with_a_watchdog(tmp_path, bundle, capsys):
    out = tmp_path / "edge-face.service"
    assert edge_main(["install-service", "--board", "rpi4", "--bundle", str(bundle), "--out", str(out)]) == 0
    text = out.read_text()
    for line in ("Type=notify", "User=edge-face", "Restart=on-failure", "WatchdogSec=30", "StartLimitBurst=5",
                 "StateDirectoryMode=0700", "Environment=EDGE_FACE_HOME=/var/lib/edge-face", "UMask=0077"):
        assert line in text
    assert f"--bundle {bundle.resolve()} --source picam://0" in text            # the board's own camera
    done = subprocess.run(["systemd-analyze", "verify", str(out)], capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr
    assert "sudo systemctl enable --now edge-face" in capsys.readouterr().out


def test_install_service_refuses_a_non_bundle_and_a_different_existing_file(tmp_path, bundle, capsys):
    assert edge_main(["install-service", "--board", "host", "--bundle", str(tmp_path / "nothing")]) == 2
    out = tmp_path / "unit.service"
    out.write_text("someone's unit")
    assert edge_main(["install-service", "--board", "host", "--bundle", str(bundle), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "is not a bundle" in err and "exists and differs" in err and out.read_text() == "someone's unit"


def test_ready_and_rate_limited_keep_alives_reach_the_notify_socket(tmp_path):
    path = tmp_path / "notify"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.setblocking(False)                            # a datagram is queued here before its send returns
    clock = Clock()
    notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"}, clock)   # keep-alives every 0.2 s
    notifier.ready("running")
    notifier.alive()
    clock.now += 0.15
    notifier.alive()                                     # too soon: not sent
    clock.now += 0.1
    notifier.alive("waiting for the camera")
    messages = [server.recv(256).decode() for _ in range(3)]
    with pytest.raises(BlockingIOError):
        server.recv(256)
    server.close()
    assert messages == ["READY=1\nSTATUS=running", "WATCHDOG=1", "WATCHDOG=1\nSTATUS=waiting for the camera"]
    assert not Notifier({}).active                       # outside systemd every call does nothing
    Notifier({}).alive()


class HangingCamera(Device):
    """Delivers a few frames, then a read that never returns (a wedged driver)."""

    def __init__(self):
        self.reads = 0
        self.hung, self.release = threading.Event(), threading.Event()

    def open(self):
        pass

    def grab(self):
        self.reads += 1
        if self.reads > 3:
            self.hung.set()
            self.release.wait(10)
            return None
        return np.zeros((2, 2, 3), np.uint8), None

    def close(self):
        self.release.set()


def test_a_hung_camera_read_stops_the_keep_alives():
    camera, clock = HangingCamera(), Clock()
    with LiveSource("fake://0", camera, retries=2, backoff_s=0.01, clock=clock) as source:
        source.open()
        assert camera.hung.wait(10)
        clock.now += live.HUNG_AFTER_S - 0.1
        assert source.working()
        clock.now += 0.2
        assert not source.working()                    # the watchdog would restart the service


def test_a_notify_socket_that_is_not_read_never_stalls_the_kiosk(tmp_path):
    path = tmp_path / "notify"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))                                # bound, never read: its queue fills after ~10 datagrams
    notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2"})

    def keep_alive():
        for _ in range(200):
            notifier.alive()

    kiosk = threading.Thread(target=keep_alive, daemon=True)
    kiosk.start()
    kiosk.join(10)
    assert not kiosk.is_alive()                           # a send that waited for room would wait for ever
    server.close()
    notifier.alive()                                      # the socket is gone: still no error


def test_a_unit_for_the_current_bundle_keeps_the_link_so_installs_and_rollbacks_reach_the_service(tmp_path, bundle):
    installed = tmp_path / "bundles"
    installed.mkdir()
    bundle.rename(installed / "host-20261205T000000Z")
    (installed / "current").symlink_to("host-20261205T000000Z")
    out = tmp_path / "edge-face.service"
    assert edge_main(["install-service", "--board", "host", "--bundle", str(installed / "current"), "--out",
                      str(out)]) == 0
    assert f"--bundle {installed / 'current'} " in out.read_text() and "host-2026" not in out.read_text()
    fleet = tmp_path / "fleet.service"                       # a fleet's kiosk: its credentials; rollouts restart it
    assert edge_main(["install-service", "--board", "host", "--bundle", str(installed / "current"), "--out",
                      str(fleet), "--fleet", "/var/lib/edge-face/fleet-kiosk.json"]) == 0
    assert "--fleet /var/lib/edge-face/fleet-kiosk.json\n" in fleet.read_text()
    assert "Restart=on-failure" in fleet.read_text()


def test_a_source_is_escaped_for_systemd_or_refused_and_a_bundle_under_tmp_is_warned_about(tmp_path, bundle, capsys,
                                                                                           caplog):
    out = tmp_path / "edge-face.service"
    source = "rtsp://door:pa%2Fss$HOME@10.0.0.7/stream?a=1&b=2"
    assert edge_main(["install-service", "--board", "host", "--bundle", str(bundle), "--out", str(out),
                      "--source", source]) == 0
    assert "--source 'rtsp://door:pa%%2Fss$$HOME@10.0.0.7/stream?a=1&b=2'" in out.read_text()
    assert "under /tmp" in caplog.text and "PrivateTmp=true" in caplog.text      # pytest's tmp_path is in /tmp
    if shutil.which("systemd-analyze"):
        done = subprocess.run(["systemd-analyze", "verify", str(out)], capture_output=True, text=True)
        assert done.returncode == 0 and done.stderr.strip() == "", done.stderr
    capsys.readouterr()
    other = tmp_path / "other.service"
    assert edge_main(["install-service", "--board", "host", "--bundle", str(bundle), "--out", str(other),
                      "--source", "v4l2:///dev/video0\nExecStartPre=/bin/sh -c 'rm -rf /'"]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot carry safely" in err and len(err.splitlines()) == 1 and not other.exists()
