"""End-of-run counts; when the source knows who is in each frame, the recognition outcome per frame."""
from __future__ import annotations

from dataclasses import dataclass, field

from edge.dataprep import largest


@dataclass
class RunSummary:
    enrolled: set[str]
    frames: int = 0
    faces: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("correct_accept", "correct_reject", "false_accept", "false_reject", "missed_face"), 0))
    scored: bool = False

    def add(self, truth: dict | None, decisions) -> None:
        self.frames += 1
        self.faces += len(decisions)
        if not truth or "identity" not in truth:
            return
        self.scored = True
        person = truth["identity"]
        if person is None:
            self.outcomes["false_accept"] += sum(d.identity is not None for d in decisions)
            return
        if not decisions:
            self.outcomes["missed_face"] += 1
            return
        said = largest(decisions).identity
        if person in self.enrolled:
            key = "correct_accept" if said == person else ("false_reject" if said is None else "false_accept")
        else:
            key = "correct_reject" if said is None else "false_accept"
        self.outcomes[key] += 1

    def text(self, seconds: float) -> str:
        line = f"summary: {self.frames} frames, {self.faces} faces, {self.frames / max(seconds, 1e-9):.1f} fps"
        if self.scored:
            judged = sum(v for k, v in self.outcomes.items() if k != "missed_face")
            right = self.outcomes["correct_accept"] + self.outcomes["correct_reject"]
            counts = ", ".join(f"{k} {v}" for k, v in self.outcomes.items())
            line += f"; frames with a person decided correctly: {right}/{judged} ({counts})"
        return line
