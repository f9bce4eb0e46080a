"""What a benchmark ran on: board, machine, CPU, OS, runtime versions, power mode, threads.

Every reading is best effort: a file or tool that is missing on this machine gives None, never an error,
because the same code runs on a laptop, a Raspberry Pi and a Jetson.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import platform
import shlex
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

# Distribution names to try for each runtime, in order (a Jetson has onnxruntime-gpu, not onnxruntime).
_PACKAGES = {
    "numpy": ("numpy",),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless", "opencv-contrib-python"),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "ai-edge-litert": ("ai-edge-litert",),
    "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu11", "tensorrt-libs"),   # JetPack's is the first
}
ENVIRONMENT_KEYS = ("board", "machine_model", "cpu_model", "cores", "os", "arch", "python", "versions",
                    "power_mode", "cpu_governor", "threads", "jetpack", "soc_temperature_c", "throttled", "command",
                    "manifest_sha256", "bundle_for_another_board")


def collect_environment(board: str, threads: int, bundle: str | Path | None = None) -> dict:
    """The machine as the benchmark found it; with ``bundle``, the sha256 of its manifest (which files ran)."""
    manifest = Path(bundle) / "manifest.json" if bundle is not None else None
    elsewhere = compiled_for_elsewhere(board)
    if elsewhere:
        print(f"warning: {elsewhere}; measured anyway and recorded (environment.bundle_for_another_board)",
              file=sys.stderr)
    return {
        "board": board,
        "machine_model": _read_text("/proc/device-tree/model"),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "os": os_name(),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "versions": {name: package_version(dists) for name, dists in _PACKAGES.items()},
        "power_mode": jetson_power_mode(),
        "cpu_governor": _read_text("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "threads": threads,
        "jetpack": _read_text("/etc/nv_tegra_release"),          # L4T release line on a Jetson
        "soc_temperature_c": soc_temperature(),
        "throttled": pi_throttled(),
        "command": shlex.join(["python", "-m", "benchmarks", *sys.argv[1:]]) if sys.argv[1:] else None,
        "manifest_sha256": (hashlib.sha256(manifest.read_bytes()).hexdigest()
                            if manifest is not None and manifest.is_file() else None),
        "bundle_for_another_board": elsewhere,
    }


def compiled_for_elsewhere(board: str) -> str | None:
    """Why the bundle's board is not this machine (its config names another CPU architecture), or None."""
    from edge.base.errors import UserError
    from edge.runtime.boards import load_board

    try:
        arch = load_board(board).arch
    except UserError:                      # an unknown board name: nothing to compare with
        return None
    here = platform.machine()
    return None if arch == here else f"the bundle is for {board} ({arch}), this machine is {here}"


def soc_temperature() -> float | None:
    """The hottest thermal zone in degrees C (Pi and Jetson kernels expose them; most laptops too)."""
    readings = [_read_text(str(zone / "temp")) for zone in Path("/sys/class/thermal").glob("thermal_zone*")]
    values = [int(r) / 1000 for r in readings if r and r.lstrip("-").isdigit()]
    return max(values) if values else None


def pi_throttled() -> str | None:
    """``vcgencmd get_throttled`` on a Raspberry Pi (0x0: never throttled or under-volted since boot)."""
    output = _tool_output("vcgencmd", "get_throttled")
    if output is None:
        return None
    return output.strip().partition("=")[2] or None


def _tool_output(name: str, *args: str) -> str | None:
    """A board tool's standard output; None where the tool does not exist or cannot run."""
    binary = shutil.which(name)
    if binary is None:
        return None
    try:
        return subprocess.run([binary, *args], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def _read_text(path: str) -> str | None:
    try:
        # device-tree strings end in a NUL byte
        return Path(path).read_text(errors="replace").strip().strip("\x00").strip() or None
    except OSError:
        return None


def cpu_model() -> str | None:
    """x86 says ``model name``; ARM kernels say ``Model`` or only ``CPU part``, hence several keys."""
    text = _read_text("/proc/cpuinfo") or ""
    for key in ("model name", "Hardware", "Model", "cpu model"):
        for line in text.splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or None


def os_name() -> str:
    text = _read_text("/etc/os-release") or ""
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.partition("=")[2].strip().strip('"')
    return platform.platform()


def package_version(distributions: tuple[str, ...]) -> str | None:
    """The first installed distribution's version; for a module installed without package metadata (JetPack's
    TensorRT comes from apt), its ``__version__`` when the first name is importable."""
    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    module = distributions[0].replace("-", "_")
    if importlib.util.find_spec(module) is None:
        return None
    return getattr(importlib.import_module(module), "__version__", None)


def jetson_power_mode() -> str | None:
    """The nvpmodel mode name (e.g. ``MAXN``, ``15W``) on a Jetson; None where nvpmodel does not exist."""
    output = _tool_output("nvpmodel", "-q")
    if output is None:
        return None
    for line in output.splitlines():
        if "Power Mode" in line:
            return line.partition(":")[2].strip() or None
    return output.strip() or None
