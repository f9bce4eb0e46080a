"""End-of-run counts: frames, visits and their decisions; when the source knows who is in each frame, whether
each visitor got exactly one decision and whether it was right."""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

OUTCOMES = ("named", "unknown", "undecided")


@dataclass
class VisitSummary:
    enrolled: set[str]
    frames: int = 0
    frames_with_face: int = 0
    decisions: Counter = field(default_factory=Counter)                 # outcome -> visits
    liveness: Counter = field(default_factory=Counter)                  # liveness verdict -> visits
    _seen_by_track: dict = field(default_factory=lambda: defaultdict(Counter))   # track -> truth -> frames
    _visitors: set = field(default_factory=set)
    _scored: list = field(default_factory=list)                          # (truth, decision)

    def add_frame(self, truth: dict | None, tracks) -> None:
        """One frame: the confirmed tracks detected in it, and who the source says is there."""
        self.frames += 1
        self.frames_with_face += bool(tracks)
        person = (truth or {}).get("identity", False)
        if person is False:
            return
        if person is not None:
            self._visitors.add(person)
        for track in tracks:
            self._seen_by_track[track.id][person] += 1

    def truth_of(self, track: int):
        """Who the source says the track's face was in most of its frames: a name, None (no one), or False when
        the source does not know."""
        seen = self._seen_by_track.get(track)
        return seen.most_common(1)[0][0] if seen else False

    def add_decisions(self, decisions) -> None:
        for decision in decisions:
            verdict = (decision.liveness or {}).get("verdict", "off")
            if decision.rejudged:          # the visit, counted once already, as insufficient: now it has a verdict
                self.liveness["insufficient"] -= 1
                self.liveness[verdict] += 1
                continue
            self.decisions[decision.outcome] += 1
            self.liveness[verdict] += 1
            seen = self._seen_by_track.pop(decision.track, None)
            if seen is not None:
                self._scored.append((seen.most_common(1)[0][0], decision))

    def outcomes(self) -> dict[str, int]:
        """Visits scored against the truth: who was there against what was decided."""
        counts = Counter()
        for person, decision in self._scored:
            if person is None:
                counts["named_no_one" if decision.outcome == "named" else "empty_track"] += 1
            elif person in self.enrolled:
                if decision.outcome == "named":
                    counts["named_correctly" if decision.identity == person else "named_as_someone_else"] += 1
                else:
                    counts[f"enrolled_{decision.outcome}"] += 1
            else:
                counts["stranger_named" if decision.outcome == "named" else f"stranger_{decision.outcome}"] += 1
        decided = Counter(person for person, _ in self._scored if person is not None)
        counts["visitors"] = len(self._visitors)
        counts["visitors_with_one_decision"] = sum(decided[p] == 1 for p in self._visitors)
        counts["enrolled_visitors"] = len(self._visitors & self.enrolled)
        return dict(counts)

    def text(self, seconds: float) -> str:
        visits = sum(self.decisions.values())
        by_outcome = ", ".join(f"{name} {self.decisions[name]}" for name in OUTCOMES)
        line = (f"summary: {self.frames} frames ({self.frames_with_face} with a face), {visits} visits, "
                f"{visits} decisions ({by_outcome}), liveness "
                f"{', '.join(f'{v} {n}' for v, n in sorted(self.liveness.items())) or 'none'}, "
                f"{self.frames / max(seconds, 1e-9):.1f} fps")
        if self._visitors:
            scored = self.outcomes()
            details = ", ".join(f"{k} {v}" for k, v in sorted(scored.items()) if k not in ("visitors",))
            line += f"; against the source's truth: {scored['visitors']} visitors ({details})"
        return line
