"""Which liveness checks a kiosk runs, and building them for its bundle.

The board config's ``liveness.checks`` name them; a check whose model the bundle carries (``texture``: a file of
task ``liveness``) runs as well; ``edge run|serve --liveness NAMES`` replaces the list. A check the list names
whose model the bundle lacks is refused at start, with what to do. The challenge always runs with ``planar``:
the detector's key points on a photo tilted far enough move as a turning head's do (measured: up to 0.23 of the
eye distance at 40 degrees), which the photo's flat movement cannot hide from planar.
"""
from __future__ import annotations

import random
from pathlib import Path

from edge.base.errors import UserError
from edge.liveness.checks import CheckContext, build_check
from edge.liveness.gate import LivenessGate
from edge.runtime.backends.base import BackendOptions
from edge.runtime.board_profile import BoardProfile
from edge.runtime.boards import LIVENESS_CHECKS, load_board, with_liveness
from edge.runtime.manifest import Manifest, read_manifest

BUNDLED_CHECKS = {"texture": "liveness"}     # check -> the manifest task of the model it runs


def chosen_checks(manifest: Manifest, board_checks: tuple[str, ...], override: str | None) -> list[str]:
    """The checks to run: ``override`` (comma-separated, ``none`` for no passive check) when given, else the
    board's plus those whose model the bundle carries, in the registry's order."""
    if override is not None:
        names = [] if override.strip() == "none" else [n.strip() for n in override.split(",") if n.strip()]
        for name in names:
            LIVENESS_CHECKS.target(name)             # an unknown name: the valid ones
        return list(dict.fromkeys(names))
    bundled = [check for check, task in BUNDLED_CHECKS.items() if manifest.for_task(task)]
    return [name for name in LIVENESS_CHECKS.names() if name in board_checks or name in bundled]


def open_liveness(bundle_dir: str | Path, override: str | None = None, challenge: bool = False,
                  threads: int | None = None, profile: BoardProfile | None = None,
                  rng: random.Random | None = None, settings: dict | None = None) -> LivenessGate | None:
    """The kiosk's liveness gate for the bundle, or None when no check is chosen and no challenge asked;
    ``settings`` replace some of the board config's ``liveness`` ones (python -m benchmarks liveness --sweep)."""
    manifest = read_manifest(bundle_dir)
    board = load_board(manifest.board)
    if settings:
        board = with_liveness(board, settings, "--sweep")
    names = chosen_checks(manifest, board.liveness.checks, override)
    if challenge and "planar" not in names:
        names.insert(0, "planar")
    if not names and not challenge:
        return None
    context = CheckContext(Path(bundle_dir), manifest, board, BackendOptions(threads=threads or board.threads),
                           profile)
    checks = []
    try:
        for name in names:
            checks.append(build_check(name, context))
    except UserError:
        for check in checks:
            check.close()
        raise
    return LivenessGate(checks, board.liveness, challenge, rng)
