"""``benchmarks latency --write_profile``: the board's measured profile from a latency run on the board itself.

For each task the file and backend with the lowest median time become the task's default (edge.runtime.board_profile);
every file's median goes with it, so the choice can be checked. Only a run on the board's own kind of CPU may
write it: a profile measured elsewhere would replace facts with numbers from another machine.
"""
from __future__ import annotations

import platform
from pathlib import Path

from edge.base.errors import UserError
from edge.runtime.board_profile import profile_paths, write_profile
from edge.runtime.boards import load_board


def fastest_per_task(results: list[dict]) -> dict[str, dict]:
    tasks: dict[str, dict] = {}
    for result in (r for r in results if r["summary"]["p50"] is not None):     # skipped rows were not timed
        task, median = result["model"]["task"], result["summary"]["p50"]
        entry = tasks.setdefault(task, {"measured": {}})
        entry["measured"][f"{result['model']['name']} on {result['backend']}"] = round(median, 4)
        if "median_ms" not in entry or median < entry["median_ms"]:
            entry.update(precision=result["model"]["precision"], backend=result["backend"],
                         file=result["model"]["file"], median_ms=round(median, 4))
    return tasks


def save_profile(board_name: str, results: list[dict], path: Path | None) -> Path:
    board = load_board(board_name)
    if platform.machine() != board.arch:
        raise UserError(f"--write_profile measures board {board.name} ({board.arch}) on the board itself; this "
                        f"machine is {platform.machine()}")
    return write_profile(path or profile_paths(board.name)[0], board.name, fastest_per_task(results))
