"""A board's measured profile: the precision and backend that ran each task fastest on the board itself.

Board configs hold facts (a Cortex-A72 has no int8 dot product, a Maxwell GPU no INT8 path) and derive each
task's default precision from them; a profile holds measurements. ``python -m benchmarks latency --bundle B
--write_profile``, run on the board, writes one; ``load_board`` reads it, so compile's report and the runtime take
the measured precision once there is one and say which they used.

Where profiles live, first found wins: ``$EDGE_FACE_HOME/profiles/<board>.json`` (written on the board, or copied
to the machine that compiles) and ``board_configs/profiles/<board>.json`` (measured boards shipped with the
package).
"""
from __future__ import annotations

import datetime
import json
import platform
from dataclasses import dataclass
from pathlib import Path

from edge.errors import UserError
from edge.paths import PACKAGED_PROFILES, profiles_dir

PROFILE_VERSION = 1


@dataclass(frozen=True)
class BoardProfile:
    board: str
    measured: str                     # ISO date and time
    machine: str                      # platform.machine() where it was measured
    tasks: dict[str, dict]            # task -> {"precision", "backend", "file", "median_ms", "measured": {...}}
    path: Path

    @property
    def precisions(self) -> dict[str, str]:
        return {task: choice["precision"] for task, choice in self.tasks.items()}

    @property
    def backends(self) -> dict[str, str]:
        return {task: choice["backend"] for task, choice in self.tasks.items()}

    def describe(self) -> str:
        return f"measured on the board {self.measured[:10]} ({self.path})"


def profile_paths(board: str) -> list[Path]:
    return [profiles_dir() / f"{board}.json", PACKAGED_PROFILES / f"{board}.json"]


def read_profile(board: str) -> BoardProfile | None:
    """The board's profile, None when it has not been measured; a malformed file is refused, naming it."""
    path = next((p for p in profile_paths(board) if p.is_file()), None)
    if path is None:
        return None
    try:
        raw = json.loads(path.read_text())
        if raw.get("version") != PROFILE_VERSION or raw.get("board") != board:
            raise ValueError(f"version {raw.get('version')} for board {raw.get('board')!r}")
        tasks = {task: {"precision": str(c["precision"]), "backend": str(c["backend"]), **c}
                 for task, c in raw["tasks"].items()}
        return BoardProfile(board, str(raw["measured"]), str(raw["machine"]), tasks, path)
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise UserError(f"board profile {path} is malformed ({err}): measure again with python -m benchmarks "
                        f"latency --bundle DIR --write_profile, or delete it") from err


def write_profile(path: Path, board: str, tasks: dict[str, dict]) -> Path:
    """Writes a profile (atomically); ``tasks`` maps each task to its fastest file's precision and backend."""
    document = {"version": PROFILE_VERSION, "board": board, "machine": platform.machine(),
                "measured": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "tasks": tasks}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(document, indent=2) + "\n")
    partial.replace(path)
    return path
