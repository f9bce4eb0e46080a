"""``python -m edge doctor [--bundle DIR] [--json]``: the first command on a new board. One line per finding and a
verdict: the machine (architecture, OS, Python, which board config it is), its runtimes, whether the CPU has an int8
dot product, its camera stacks and one frame from the default camera, memory, disk and the gallery's home, a Pi's
power supply, the kiosk service; with a bundle, which file and backend each task would run here and one call's time.

A finding is ``ok``, ``warn`` (the board can run, something is missing: no camera, a throttled Pi) or ``fail`` (it
cannot: a 32-bit OS, no runtime, a bundle for another architecture or a file that does not load). Reading never
creates anything: the gallery's home is checked where it exists, or at its nearest existing parent.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edge.base.errors import UserError
from edge.base.paths import home as edge_home
from edge.runtime.backends.base import BackendOptions
from edge.runtime.board_profile import bundle_profile
from edge.runtime.boards import BoardConfig, board_names, load_board
from edge.runtime.machine import (
    PACKAGES,
    cpu_features,
    int8_dot_product,
    os_name,
    package_version,
    pi_throttled,
    read_text,
    tool_output,
)
from edge.runtime.manifest import read_manifest
from edge.runtime.models import choose_model, load_model

SUPPORTED_ARCHES = ("x86_64", "aarch64")     # onnxruntime publishes wheels for these; not for armv7l (32-bit)
MIN_PYTHON = (3, 10)
MIN_FREE_MB = {"memory": 300, "disk": 500}
CAMERA_WAIT_S = 5.0
TIMED_CALLS = 5
THROTTLE_BITS = {0: "under-voltage now", 1: "ARM frequency capped now", 2: "throttled now",
                 16: "under-voltage since boot", 18: "throttled since boot"}
SERVICE = "edge-face"


@dataclass(frozen=True)
class Finding:
    level: str          # ok | warn | fail
    topic: str
    text: str

    def line(self) -> str:
        return f"{self.level:<4} {self.topic}: {self.text}"


def examine(bundle: Path | None, camera: str | None) -> list[Finding]:
    """Every finding about this machine, and about running ``bundle`` on it when given."""
    board = matching_board()
    findings = machine_findings(board) + runtime_findings() + camera_findings(camera, board) + storage_findings()
    findings += power_findings() + service_findings()
    if bundle is not None:
        findings += bundle_findings(bundle)
    return findings


def matching_board() -> BoardConfig | None:
    """The board config this machine is: by the device tree's model on a Pi or a Jetson, else the one config of
    this architecture (the host's on x86_64)."""
    model = (read_text("/proc/device-tree/model") or "").lower()
    boards = [load_board(name) for name in board_names()]
    here = [b for b in boards if b.arch == platform.machine()]
    named = [b for b in here if any(word in model for word in _model_words(b))]
    if named:
        return named[0]
    return here[0] if len(here) == 1 else None


def _model_words(board: BoardConfig) -> tuple[str, ...]:
    """What the device tree's model string says on this board ("Raspberry Pi 5 Model B", "NVIDIA Jetson Nano")."""
    return {"rpi5": ("raspberry pi 5",), "rpi4": ("raspberry pi 4",), "jetson-nano": ("jetson nano",),
            "jetson-orin-nano": ("orin nano",)}.get(board.name, ())


def machine_findings(board: BoardConfig | None) -> list[Finding]:
    arch = platform.machine()
    findings = [Finding("ok" if arch in SUPPORTED_ARCHES else "fail", "machine",
                        f"{arch}, {os_name()}" + ("" if arch in SUPPORTED_ARCHES else
                                                  ": a 32-bit or unknown architecture, for which no onnxruntime "
                                                  "wheel exists; install a 64-bit OS (Raspberry Pi OS 64-bit)"))]
    python = sys.version_info[:2]
    findings.append(Finding("ok" if python >= MIN_PYTHON else "fail", "python",
                            f"{platform.python_version()}" + ("" if python >= MIN_PYTHON else
                                                              f": the kiosk needs {'.'.join(map(str, MIN_PYTHON))} "
                                                              f"or newer")))
    findings.append(Finding("ok", "board", f"this is {board.name} ({board.description})") if board else
                    Finding("warn", "board", f"no board config matches this {arch} machine alone; name one with "
                                             f"--board at compile (python -m compile --list_targets)"))
    features = cpu_features()
    dot = int8_dot_product(features)
    findings.append(Finding("ok", "cpu", f"{os.cpu_count()} cores; int8 dot product: {dot}") if dot else
                    Finding("warn", "cpu", f"{os.cpu_count()} cores; no int8 dot-product instruction (asimddp, VNNI): "
                                           f"INT8 files may run no faster than FP32 here (measure with python -m "
                                           f"benchmarks latency)"))
    return findings


def runtime_findings() -> list[Finding]:
    versions = {name: package_version(dists) for name, dists in PACKAGES.items()}
    findings = []
    if versions["onnxruntime"]:
        import onnxruntime

        providers = ", ".join(onnxruntime.get_available_providers())
        findings.append(Finding("ok", "onnxruntime", f"{versions['onnxruntime']} ({providers})"))
    if versions["ai-edge-litert"]:
        findings.append(Finding("ok", "litert", versions["ai-edge-litert"]))
    if versions["tensorrt"]:
        findings.append(Finding("ok", "tensorrt", versions["tensorrt"]))
    cuda = tool_output("nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader")
    if cuda:
        findings.append(Finding("ok", "cuda", cuda.strip().splitlines()[0]))
    if not (versions["onnxruntime"] or versions["ai-edge-litert"]):
        findings.append(Finding("fail", "runtimes", "neither onnxruntime nor LiteRT is installed: pip install "
                                                    "'edge-face[edge]'"))
    findings.append(Finding("ok", "opencv", f"{versions['opencv']}; GStreamer "
                                            f"{'yes' if _opencv_has_gstreamer() else 'no'}"))
    return findings


def _opencv_has_gstreamer() -> bool:
    import cv2

    return any(line.strip().startswith("GStreamer:") and "YES" in line
               for line in cv2.getBuildInformation().splitlines())


def camera_findings(camera: str | None, board: BoardConfig | None) -> list[Finding]:
    import importlib.util

    devices = sorted(str(p) for p in Path("/dev").glob("video*"))
    stacks = [f"V4L2 devices: {', '.join(devices) or 'none'}",
              f"picamera2: {'yes' if importlib.util.find_spec('picamera2') else 'no'}"]
    findings = [Finding("ok", "camera stacks", "; ".join(stacks))]
    uri = camera or (board.camera if board else None)
    if uri is None:
        return findings + [Finding("warn", "camera", "no default camera (no board config matches): give --camera URI")]
    return findings + [grab_one_frame(uri)]


def grab_one_frame(uri: str) -> Finding:
    """One frame from ``uri`` within CAMERA_WAIT_S: a missing camera is a warning, never a failure."""
    from edge.sources import open_source
    from edge.sources.uri import redact

    shown = redact(uri)
    device = uri.removeprefix("v4l2://") if uri.startswith("v4l2:///") else None
    if device is not None and not Path(device).exists():
        return Finding("warn", "camera", f"{shown}: {device} does not exist (is the camera plugged in?)")
    quiet = logging.getLogger("edge.sources")
    level, quiet.level = quiet.level, logging.ERROR        # its retries are this finding's business, not the log's
    try:
        source = open_source(uri)
        source.open()
    except (UserError, OSError) as err:
        quiet.setLevel(level)
        return Finding("warn", "camera", f"{shown}: {err}")
    try:
        deadline = time.monotonic() + CAMERA_WAIT_S
        while time.monotonic() < deadline and not source.ended:
            frame = source.read()
            if frame is not None:
                return Finding("ok", "camera", f"{shown}: a {frame.image.shape[1]}x{frame.image.shape[0]} frame")
        return Finding("warn", "camera", f"{shown}: no frame within {CAMERA_WAIT_S:g} s")
    finally:
        source.close()
        quiet.setLevel(level)


def storage_findings() -> list[Finding]:
    memory = _meminfo_mb("MemAvailable")
    findings = []
    if memory is not None:
        findings.append(Finding("ok" if memory >= MIN_FREE_MB["memory"] else "warn", "memory",
                                f"{memory} MB available"))
    home = edge_home()
    existing = next(p for p in (home, *home.parents) if p.exists())
    free = shutil.disk_usage(existing).free // 2**20
    writable = os.access(existing, os.W_OK)
    where = str(home) if existing == home else f"{home} (not made yet; {existing} exists)"
    level = "ok" if writable and free >= MIN_FREE_MB["disk"] else "warn" if writable else "fail"
    findings.append(Finding(level, "gallery home", f"{where}: {'writable' if writable else 'not writable'}, "
                                                  f"{free} MB free"))
    return findings


def _meminfo_mb(key: str) -> int | None:
    for line in (read_text("/proc/meminfo") or "").splitlines():
        name, _, value = line.partition(":")
        if name == key and value.split():
            return int(value.split()[0]) // 1024
    return None


def power_findings() -> list[Finding]:
    """A Pi's power supply and throttling, by ``vcgencmd get_throttled``; nothing elsewhere."""
    throttled = pi_throttled()
    if throttled is None:
        return []
    value = int(throttled, 16)
    problems = [text for bit, text in THROTTLE_BITS.items() if value >> bit & 1]
    return [Finding("warn" if problems else "ok", "power",
                    f"{throttled}: {', '.join(problems)} (use the official power supply)" if problems else
                    f"{throttled}: never under-volted or throttled since boot")]


def service_findings() -> list[Finding]:
    state = (tool_output("systemctl", "is-active", SERVICE) or "").strip()
    if not state:
        return []                          # no systemd here (a container, a chroot)
    return [Finding("ok", "service", f"{SERVICE}: {state} (python -m edge install-service writes its unit)"
                    if state != "active" else f"{SERVICE}: active")]


def bundle_findings(bundle: Path) -> list[Finding]:
    """Which file and backend the kiosk would run for each of the bundle's tasks, and one call's median time."""
    try:
        manifest = read_manifest(bundle, verify_files=True)
        board = load_board(manifest.board)
    except UserError as err:
        return [Finding("fail", "bundle", str(err))]
    if board.arch != platform.machine():
        return [Finding("fail", "bundle", f"{bundle} is compiled for {board.name} ({board.arch}), this machine is "
                                          f"{platform.machine()}")]
    profile = bundle_profile(bundle)
    findings = []
    for task in dict.fromkeys(entry.task for entry in manifest.models):
        try:
            choice = choose_model(manifest, board, task, profile=profile)
            findings.append(Finding("ok", f"bundle {task}", f"{choice.entry.file} on {choice.backend} "
                                                           f"({choice.reason}): {_one_call_ms(bundle, choice):.2f} ms"))
        except (UserError, RuntimeError, OSError, ValueError) as err:
            findings.append(Finding("fail", f"bundle {task}", f"cannot run here: {err}"))
    return findings


def _one_call_ms(bundle: Path, choice) -> float:
    """The median of TIMED_CALLS calls on zero inputs, after one untimed call."""
    model = load_model(bundle, choice.entry, choice.backend, BackendOptions())
    try:
        feeds = {spec.name: np.zeros(spec.shape, np.dtype(spec.dtype)) for spec in choice.entry.inputs}
        model.infer(feeds)
        times = []
        for _ in range(TIMED_CALLS):
            start = time.perf_counter()
            model.infer(feeds)
            times.append((time.perf_counter() - start) * 1000)
        return float(np.median(times))
    finally:
        model.close()


def verdict(findings: list[Finding]) -> tuple[int, str]:
    failed = [f for f in findings if f.level == "fail"]
    warned = [f for f in findings if f.level == "warn"]
    if failed:
        return 1, f"this board cannot run the kiosk: {'; '.join(f'{f.topic}: {f.text}' for f in failed)}"
    return 0, f"this board can run the kiosk ({len(warned)} warnings)" if warned else "this board can run the kiosk"


def run_doctor(args) -> int:
    findings = examine(args.bundle, args.camera)
    code, summary = verdict(findings)
    if args.json:
        print(json.dumps({"findings": [asdict(f) for f in findings], "ok": code == 0, "verdict": summary},
                         indent=2))
    else:
        for finding in findings:
            print(finding.line())
        print(f"verdict: {summary}")
    return code
