"""``edge doctor``: one line per finding and a verdict; warnings (no camera) pass, a machine or bundle that cannot
run the kiosk fails with the reason; it creates nothing."""
import json
import platform

import pytest

from edge.commands.cli import main

pytestmark = pytest.mark.unit
CAMERA = "synthetic://kiosk?seeds=1&frames_per_person=3"


def test_the_host_runs_its_bundle_and_each_task_is_timed(verify_bundle, capsys, tmp_path, monkeypatch):
    home = tmp_path / "not-yet"
    monkeypatch.setenv("EDGE_FACE_HOME", str(home))
    assert main(["doctor", "--bundle", str(verify_bundle), "--camera", CAMERA]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("verdict: this board can run the kiosk")
    topics = {line.split(":")[0].split(maxsplit=1)[1] for line in lines[:-1]}
    assert {"machine", "python", "board", "cpu", "onnxruntime", "camera", "gallery home", "bundle verify",
            "bundle detect"} <= topics
    camera = next(line for line in lines if line.split()[1] == "camera:")
    assert camera.startswith("ok") and "a 640x480 frame" in camera
    verify = next(line for line in lines if "bundle verify" in line)
    assert verify.startswith("ok") and verify.endswith(" ms")
    assert not home.exists()                            # a read creates nothing


def test_a_missing_camera_is_a_warning_and_json_says_so(capsys):
    assert main(["doctor", "--camera", "v4l2:///dev/video97", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    camera = next(f for f in report["findings"] if f["topic"] == "camera")
    assert camera["level"] == "warn" and "/dev/video97 does not exist" in camera["text"]
    assert report["ok"] and "warning" in report["verdict"]


def test_a_32_bit_os_cannot_run_the_kiosk(capsys, monkeypatch):
    monkeypatch.setattr(platform, "machine", lambda: "armv7l")
    assert main(["doctor", "--camera", CAMERA]) == 1
    out = capsys.readouterr().out
    assert "fail machine: armv7l" in out and "no onnxruntime wheel exists" in out
    assert out.splitlines()[-1].startswith("verdict: this board cannot run the kiosk: machine: armv7l")


def test_a_bundle_for_another_architecture_is_refused_with_the_reason(verify_bundle, capsys, monkeypatch):
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert main(["doctor", "--bundle", str(verify_bundle), "--camera", CAMERA]) == 1
    assert "is compiled for host (x86_64), this machine is aarch64" in capsys.readouterr().out
