"""The machine the models run on, as its files and tools say: CPU, its instruction-set features, OS, runtime
versions, temperature, power mode and throttling.

Every reading is best effort: a file or tool that is missing on this machine gives None, never an error, because the
same code runs on a laptop, a Raspberry Pi and a Jetson. ``benchmarks`` records these with each result and
``edge doctor`` reports them.
"""
from __future__ import annotations

import ctypes
import importlib
import importlib.util
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

# Distribution names to try for each runtime, in order (a Jetson has onnxruntime-gpu, not onnxruntime).
PACKAGES = {
    "numpy": ("numpy",),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless", "opencv-contrib-python"),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "ai-edge-litert": ("ai-edge-litert",),
    "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu11", "tensorrt-libs"),   # JetPack's is the first
}
# CPU flags of an int8 dot-product instruction: ARMv8.2's sdot/udot, x86's VNNI
INT8_DOT_FLAGS = ("asimddp", "avx512_vnni", "avx_vnni", "avxvnni")
AT_HWCAP = 16
# arm64's HWCAP bits (the kernel's asm/hwcap.h), by the names /proc/cpuinfo gives them
ARM64_HWCAPS = {0: "fp", 1: "asimd", 3: "aes", 4: "pmull", 5: "sha1", 6: "sha2", 7: "crc32", 8: "atomics",
                9: "fphp", 10: "asimdhp", 12: "asimdrdm", 17: "sha3", 20: "asimddp", 21: "sha512", 22: "sve"}


def cpu_features() -> list[str]:
    """The CPU's feature flags. On arm64, from the auxiliary vector the kernel (or qemu, emulating one) gives this
    process; elsewhere as /proc/cpuinfo lists them (``flags`` on x86). Empty when unknown."""
    if platform.machine() == "aarch64":
        try:
            getauxval = ctypes.CDLL(None).getauxval
        except (OSError, AttributeError):
            return []
        getauxval.restype, getauxval.argtypes = ctypes.c_ulong, [ctypes.c_ulong]
        hwcap = getauxval(AT_HWCAP)
        return sorted(name for bit, name in ARM64_HWCAPS.items() if hwcap >> bit & 1)
    for line in (read_text("/proc/cpuinfo") or "").splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() in ("Features", "flags"):
            return sorted(set(value.split()))
    return []


def int8_dot_product(features: list[str]) -> str | None:
    """The int8 dot-product flag among ``features``, or None."""
    return next((flag for flag in INT8_DOT_FLAGS if flag in features), None)


def soc_temperature() -> float | None:
    """The hottest thermal zone in degrees C (Pi and Jetson kernels expose them; most laptops too)."""
    readings = [read_text(str(zone / "temp")) for zone in Path("/sys/class/thermal").glob("thermal_zone*")]
    values = [int(r) / 1000 for r in readings if r and r.lstrip("-").isdigit()]
    return max(values) if values else None


def pi_throttled() -> str | None:
    """``vcgencmd get_throttled`` on a Raspberry Pi (0x0: never throttled or under-volted since boot)."""
    output = tool_output("vcgencmd", "get_throttled")
    if output is None:
        return None
    return output.strip().partition("=")[2] or None


def tool_output(name: str, *args: str) -> str | None:
    """A board tool's standard output; None where the tool does not exist or cannot run."""
    binary = shutil.which(name)
    if binary is None:
        return None
    try:
        return subprocess.run([binary, *args], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def read_text(path: str) -> str | None:
    try:
        # device-tree strings end in a NUL byte
        return Path(path).read_text(errors="replace").strip().strip("\x00").strip() or None
    except OSError:
        return None


def cpu_model() -> str | None:
    """x86 says ``model name``; ARM kernels say ``Model`` or only ``CPU part``, hence several keys."""
    text = read_text("/proc/cpuinfo") or ""
    for key in ("model name", "Hardware", "Model", "cpu model"):
        for line in text.splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or None


def os_name() -> str:
    text = read_text("/etc/os-release") or ""
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
    output = tool_output("nvpmodel", "-q")
    if output is None:
        return None
    for line in output.splitlines():
        if "Power Mode" in line:
            return line.partition(":")[2].strip() or None
    return output.strip() or None
