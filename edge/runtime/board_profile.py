"""A board's measured profile: the precision and backend that ran each task fastest on the board itself.

Board configs hold facts (a Cortex-A72 has no int8 dot product, a Maxwell GPU no INT8 path) and derive each
task's default precision from them; a profile holds measurements. ``python -m benchmarks latency --bundle B
--write_profile``, run on the board, writes one. ``load_board`` never reads it: the commands that run models for
the board (``edge run``, ``edge serve``, ``benchmarks``, compile's report) read it here and hand it to the one
chooser (``edge.runtime.models.choose_model``), so a test or a library caller that passes none gets the config's facts.

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

from edge.base.errors import UserError
from edge.base.paths import PACKAGED_PROFILES, profiles_dir
from edge.runtime.backends import BACKEND_FORMATS
from edge.runtime.boards import PRECISIONS, TASKS, BoardConfig, load_board
from edge.runtime.manifest import read_manifest

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


def read_profile(board: BoardConfig) -> BoardProfile | None:
    """The board's profile, None when it has not been measured; a malformed file, or one whose choices the board's
    ``supports`` table does not allow, is refused, naming it."""
    profile = _read(board.name)
    if profile is not None:
        _check_against(profile, board)
    return profile


def _read(board: str) -> BoardProfile | None:
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


def _check_against(profile: BoardProfile, board: BoardConfig) -> None:
    for task, precision in profile.precisions.items():
        backend = profile.backends[task]
        if task not in TASKS or precision not in PRECISIONS or backend not in BACKEND_FORMATS:
            raise UserError(f"board profile {profile.path} names task {task!r} at precision {precision!r} on "
                            f"backend {backend!r}")
        if not any(precision in board.supports.get(fmt, ()) for fmt in BACKEND_FORMATS[backend]):
            raise UserError(f"board profile {profile.path} runs {task} at {precision} on {backend}, which board "
                            f"{board.name}'s supports table does not allow; measure it again with python -m "
                            f"benchmarks latency --write_profile")


def board_with_profile(name: str) -> tuple[BoardConfig, BoardProfile | None]:
    """A board's config and its measured profile (None when unmeasured): what the commands that run on the board
    read and pass to ``edge.runtime.models.choose_model``."""
    board = load_board(name)
    return board, read_profile(board)


def bundle_profile(bundle_dir: str | Path) -> BoardProfile | None:
    """The measured profile of the board a bundle was compiled for, None when that board is unmeasured."""
    return board_with_profile(read_manifest(bundle_dir).board)[1]


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
