"""What a benchmark ran on: board, machine, CPU, OS, runtime versions, power mode, threads (the readings are
``edge.runtime.machine``'s, which ``edge doctor`` shares)."""
from __future__ import annotations

import hashlib
import os
import platform
import shlex
import sys
from pathlib import Path

from edge.runtime.machine import (
    PACKAGES,
    cpu_model,
    jetson_power_mode,
    os_name,
    package_version,
    pi_throttled,
    read_text,
    soc_temperature,
)
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
        "machine_model": read_text("/proc/device-tree/model"),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "os": os_name(),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "versions": {name: package_version(dists) for name, dists in PACKAGES.items()},
        "power_mode": jetson_power_mode(),
        "cpu_governor": read_text("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "threads": threads,
        "jetpack": read_text("/etc/nv_tegra_release"),          # L4T release line on a Jetson
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
