"""One decision per visit: the evidence a track gathers, and when it is enough.

Each visit (a confirmed track) takes up to ``samples`` embeddings, ``sample_gap`` frames apart, of faces that
pass the quality gate (``edge.faces.quality``); their normalised mean is matched against the gallery. Two
thresholds, as self-hosted recognition services have them: at or above the match threshold the visitor is
named; below the lower unknown threshold they are a stranger; in between the visit keeps looking, and is
"undecided" if it runs out of looks or ends first. A visit is decided once: after at least ``min_samples``
looks when the evidence is clear, or when it ends with whatever it has, with the reason recorded.

With liveness, a decision that went out ``insufficient`` may go out once more, ``rejudged``, when the visit's
verdict settles later (edge.liveness.gate): it is the same visit, not a new one.

A visit is named only as one continuous presence: every one of its looks, alone, must match the identity its
mean matched (at the 1:1 same-person threshold), so looks of two people mixed in one track never open a door
under either name. A visit cut short (the camera stopped delivering frames, the kiosk stopped) is decided on what
it has and marked ``interrupted``: it is logged, and opens nothing.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from edge.faces.matching import Thresholds
from edge.runtime.boards import TrackingConfig

MIN_SAMPLES = 2          # looks before a visit may be decided while it goes on


@dataclass
class VisitDecision:
    track: int
    frame: int                   # the frame at which it was decided
    outcome: str                 # "named" | "unknown" | "undecided"
    identity: str | None
    score: float                 # the visit's mean embedding against the closest template (-1: none)
    best_match: str | None
    samples: int
    reason: str
    box: list[float]
    evidence: list = field(default_factory=list, repr=False)   # the visit's embeddings, for naming it later
    crop: np.ndarray | None = field(default=None, repr=False)   # its first good aligned face, for people to see
    look_time_s: float | None = None     # stream time of the newest look it was decided on (None: no look)
    interrupted: str = ""                # why the visit was cut short ("" when it was not): it opens nothing
    liveness: dict | None = None         # edge.liveness.gate.Verdict.record(): set when the decision is published
    door: str | None = None              # what the door made of it (edge.kiosk.actions: "opened" or a refusal)
    rejudged: bool = False               # the visit's decision once more: its liveness settled after it went out

    def record(self) -> dict:
        """The decision as one JSON line and one logged event: what was decided, on how many looks, and why, and
        whether the face was live."""
        return {"track": self.track, "frame": self.frame, "outcome": self.outcome, "identity": self.identity,
                "score": self.score, "best_match": self.best_match, "samples": self.samples,
                "reason": self.reason, "box": self.box, "liveness": self.liveness, "door": self.door,
                "rejudged": self.rejudged}


@dataclass
class Visit:
    track: int
    first_frame: int
    embeddings: list[np.ndarray] = field(default_factory=list)
    last_sample: int = -10**9                                # the frame of the last look, taken or rejected
    look_time_s: float | None = None                         # stream time of the last look taken
    rejected: Counter = field(default_factory=Counter)      # quality problem -> frames
    crop: np.ndarray | None = None                          # the first look that passed the quality gate
    decision: VisitDecision | None = None


class VisitJudge:
    """Keeps the evidence of every open visit and decides each one exactly once."""

    def __init__(self, config: TrackingConfig, thresholds: Thresholds, match, identity_score):
        """``match``: unit embedding -> (closest identity, score), or (None, -1.0) when the gallery is empty;
        ``identity_score``: (unit embedding, identity) -> its score against that identity's template (scores as
        edge.faces.matcher.Matcher gives them: cosines, or their S-norm)."""
        self.config = config
        self.thresholds = thresholds
        self.match = match
        self.identity_score = identity_score
        self.visits: dict[int, Visit] = {}

    def visit(self, track: int, frame: int) -> Visit:
        return self.visits.setdefault(track, Visit(track, frame))

    def wants_sample(self, track: int, frame: int) -> bool:
        """True when this open visit should look at its face in this frame."""
        visit = self.visit(track, frame)
        return (visit.decision is None and len(visit.embeddings) < self.config.samples
                and frame - visit.last_sample >= self.config.sample_gap)

    def reject(self, track: int, frame: int, problem: str) -> None:
        """A look whose face failed the quality gate: counted, and the next look waits ``sample_gap`` frames."""
        visit = self.visit(track, frame)
        visit.rejected[problem] += 1
        visit.last_sample = frame

    def add_sample(self, track: int, frame: int, time_s: float, embedding: np.ndarray, box,
                   crop: np.ndarray | None = None) -> VisitDecision | None:
        """Records one look at stream time ``time_s`` (and its aligned crop, the first time); returns the visit's
        decision if the evidence now settles it."""
        visit = self.visit(track, frame)
        if visit.crop is None:
            visit.crop = crop
        visit.embeddings.append(np.asarray(embedding, np.float32))
        visit.last_sample, visit.look_time_s = frame, time_s
        count = len(visit.embeddings)
        if count < MIN_SAMPLES:
            return None
        identity, score = self._score(visit)
        if score >= self.thresholds.match or score < self.thresholds.unknown or count >= self.config.samples:
            return self._decide(visit, frame, box, identity, score, f"{count} looks")
        return None

    def end(self, track: int, frame: int, box, interrupted: str = "") -> VisitDecision | None:
        """The visit ended (cut short when ``interrupted`` says why): its decision, unless it was already decided
        (then None)."""
        visit = self.visits.pop(track, None) or Visit(track, frame)
        if visit.decision is not None:
            return None
        cut = f"{interrupted}; " if interrupted else ""
        if not visit.embeddings:
            problems = ", ".join(f"{name} {count}" for name, count in visit.rejected.most_common())
            reason = f"{cut}no face good enough to judge ({problems or 'too brief'})"
            decision = self._record(visit, VisitDecision(track, frame, "undecided", None, -1.0, None, 0, reason,
                                                         _rounded(box)))
        else:
            identity, score = self._score(visit)
            decision = self._decide(visit, frame, box, identity, score,
                                    f"{cut}visit ended after {len(visit.embeddings)} looks")
        decision.interrupted = interrupted
        return decision

    def sampled(self, track: int) -> bool:
        """Whether the visit has had a look that passed the quality gate."""
        visit = self.visits.get(track)
        return visit is not None and bool(visit.embeddings)

    def mean_embedding(self, track: int) -> np.ndarray | None:
        """The visit's looks averaged and normalised; None before its first look."""
        visit = self.visits.get(track)
        return _mean(visit.embeddings) if visit is not None and visit.embeddings else None

    def _score(self, visit: Visit) -> tuple[str | None, float]:
        return self.match(_mean(visit.embeddings))

    def _decide(self, visit: Visit, frame: int, box, identity: str | None, score: float,
                how: str) -> VisitDecision:
        stray = self._stray_look(visit, identity) if identity is not None and score >= self.thresholds.match else None
        if stray:
            outcome, named, reason = "undecided", None, f"{how}: {stray}"
        elif identity is not None and score >= self.thresholds.match:
            outcome, named, reason = "named", identity, f"{how}: score at or above the match threshold"
        elif score < self.thresholds.unknown:
            outcome, named, reason = "unknown", None, f"{how}: score below the unknown threshold"
        else:
            outcome, named, reason = "undecided", None, f"{how}: score between the unknown and match thresholds"
        return self._record(visit, VisitDecision(visit.track, frame, outcome, named, round(float(score), 4),
                                                 identity, len(visit.embeddings), reason, _rounded(box)))

    def _stray_look(self, visit: Visit, identity: str) -> str | None:
        """Why the visit's looks are not one continuous presence of ``identity`` (a look that, alone, does not match
        them at the same-person threshold), or None when every look does."""
        for number, look in enumerate(visit.embeddings, 1):
            score = self.identity_score(look, identity)
            if score < self.thresholds.same_person:
                return (f"look {number} of {len(visit.embeddings)} scores {score:.4f} against {identity}, below the "
                        f"same-person threshold {self.thresholds.same_person:.4f}: not one person throughout")
        return None

    @staticmethod
    def _record(visit: Visit, decision: VisitDecision) -> VisitDecision:
        decision.evidence, decision.crop, decision.look_time_s = list(visit.embeddings), visit.crop, visit.look_time_s
        visit.decision = decision
        return decision


def _mean(embeddings: list[np.ndarray]) -> np.ndarray:
    mean = np.sum([e / (np.linalg.norm(e) + 1e-12) for e in embeddings], axis=0)
    return mean / (np.linalg.norm(mean) + 1e-12)


def _rounded(box) -> list[float]:
    return [round(float(v), 1) for v in box]
