"""The liveness checks' contract: each check reads a visit's looks and gives a verdict, a score and its evidence.

A look is one of the visit's sampled frames (not every frame): the frame, the face's detection in it and the
stream time. A check keeps what it needs from each look small (``observe`` returns it: a score, a few hundred
points, a small grey crop) so a visit never holds whole frames, and judges the visit from those (``judge``).
Checks are named in the board config's ``liveness:`` block (edge.runtime.boards.LivenessConfig) and built by name
from ``edge.runtime.boards.LIVENESS_CHECKS``; ``edge.liveness.gate.fuse`` combines their verdicts into the visit's one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from edge.faces.detect import Detection
from edge.runtime.boards import LIVENESS_CHECKS

VERDICTS = ("live", "attack", "insufficient")
FUSED_VERDICTS = VERDICTS + ("off",)     # off: the kiosk runs without liveness (--no_liveness)


@dataclass(frozen=True)
class Look:
    image: np.ndarray          # the whole frame, BGR, as the detector saw it (read it, do not keep it)
    detection: Detection       # the visit's face in it: box, key points, score
    time_s: float              # stream time of the frame
    frame: int


@dataclass(frozen=True)
class CheckResult:
    verdict: str                                   # one of VERDICTS
    score: float                                   # the check's own measure, higher is more live
    evidence: dict[str, Any] = field(default_factory=dict)    # JSON-ready numbers a person can read
    alone: bool = False        # live on this check's evidence alone: a face that did not move can be live by it
    unmoved: bool = False      # insufficient only for want of movement: a check live ``alone`` stands in for it
    sure: bool = False         # live, and sure of every look: it stands in for a check that came ``near``
    near: bool = False         # insufficient, but near live: a check ``sure`` of every look stands in for it
    near_twice: bool = False   # near live in two measurements that share no look: any check live stands in for it

    def record(self) -> dict:
        return {"verdict": self.verdict, "score": round(float(self.score), 4), **self.evidence}


class LivenessCheck(Protocol):
    name: str

    def observe(self, look: Look) -> Any:
        """What this check keeps of one look (small: never the frame itself)."""

    def judge(self, observed: list[Any]) -> CheckResult:
        """The visit's verdict from what ``observe`` kept of its looks, oldest first. ``insufficient`` until the
        looks say enough either way."""

    def close(self) -> None:
        """Releases the check's models."""


@dataclass(frozen=True)
class CheckContext:
    """What a check is built from: the bundle it runs from and how the kiosk loads models."""

    bundle_dir: Any            # pathlib.Path of the installed bundle
    manifest: Any              # edge.runtime.manifest.Manifest
    board: Any                 # edge.runtime.boards.BoardConfig
    options: Any               # edge.runtime.backends.base.BackendOptions
    profile: Any = None        # edge.runtime.board_profile.BoardProfile or None


def build_check(name: str, context: CheckContext) -> LivenessCheck:
    """The check ``name`` (LIVENESS_CHECKS) built for this bundle; a check that needs a file the bundle lacks is refused
    here with the reason (a UserError), before any frame."""
    return LIVENESS_CHECKS.get(name)(context)
