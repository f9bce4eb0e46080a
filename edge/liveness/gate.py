"""Liveness per visit in the kiosk's loop: looks for each check, the fused verdict, and decisions held for it.

Each visit takes a liveness look every ``look_gap`` frames (its newest ``max_looks`` kept) until its verdict is
settled, or until its decision went out with no second chance to wait for (nothing then reads its verdict). A
decision that opens no door (unknown, undecided) is not held: it goes out at once (``release_now``) with the
verdict the looks before it gave, so a stranger's event is not late and a stranger costs no looks after it. The
checks' verdicts fuse into the visit's one (``fuse``): ``attack`` when any check says attack,
``live`` when every check says live (or when one stands in for the rest: live alone while the rest want only
movement, a still face that texture is sure of; sure of every look while the rest came near live; or live while the
rest came near live twice, in pairs of looks that share none), ``insufficient`` otherwise. A visit's decision
(edge.kiosk.visits) is held until its verdict settles (live or attack) or for at most the wait
(``liveness.max_wait_s``, or the challenge's time when the kiosk asks for one), and is then released with the
verdict it has: a door opens only on ``live``.
A decision released ``insufficient`` gets a second chance when held with ``retry``: for ``liveness.retry_s`` more,
while the page asks for a slight head turn, the visit goes on taking looks, and if its verdict settles then, the
decision is released again (``Released.again``) with that verdict. A visit that ends, or a stream that stops,
releases what it holds at once, and its second chance ends with it.

A live verdict must rest on looks of the visit's person: the kiosk vouches for them as it settles (``look``), and a
look of someone else (a photo of the named person lowered from the attacker's own face) makes the visit's verdict
final and not live.
"""
from __future__ import annotations

import random
import time
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from edge.liveness.challenge import Challenge
from edge.liveness.checks import CheckResult, LivenessCheck, Look
from edge.runtime.boards import LivenessConfig

SETTLED = ("live", "attack")
TURN_REQUEST = "turn your head slightly"


@dataclass(frozen=True)
class Verdict:
    verdict: str                          # edge.liveness.checks.FUSED_VERDICTS
    score: float                          # share of the checks that say live
    checks: dict[str, dict]               # check name -> its CheckResult.record()
    looks: int = 0                        # the visit's liveness looks it was judged on
    stray: str = ""                       # why a look the checks found live is not the visit's person ("": none)
    stood_in: str = ""                    # live with a check not live (``stand_in``'s route; "": not)

    def record(self) -> dict:
        record = {"verdict": self.verdict, "score": round(self.score, 4), "looks": self.looks, "checks": self.checks}
        told = {"stray": self.stray, "stood_in": self.stood_in}
        return {**record, **{key: value for key, value in told.items() if value}}


OFF = Verdict("off", 0.0, {})


@dataclass(frozen=True)
class Released:
    decision: Any                         # what was held (the kiosk's visit decision)
    verdict: Verdict
    newest_look_s: float | None           # stream time of the visit's newest liveness look (None: none taken)
    again: bool = False                   # released a second time: its verdict settled after it went out insufficient


def fuse(results: dict[str, CheckResult], looks: int = 0) -> Verdict:
    verdicts = [r.verdict for r in results.values()]
    every = bool(verdicts) and all(v == "live" for v in verdicts)
    stood_in = "" if every or "attack" in verdicts else stand_in(list(results.values()))
    fused = "attack" if "attack" in verdicts else "live" if every or stood_in else "insufficient"
    live = sum(v == "live" for v in verdicts) / len(verdicts) if verdicts else 0.0
    return Verdict(fused, live, {name: result.record() for name, result in results.items()}, looks,
                   stood_in=stood_in)


def stand_in(results: list[CheckResult]) -> str:
    """How a check live on its own evidence stands in for the checks that are not live, none of them an attack:
    "unmoved" when one is live ``alone`` and every other wants only movement (a still face); "near" when one is
    ``sure`` of every look and every other came ``near`` live; "near_twice" when one is live and every other came
    near live twice apart (``near_twice``); "" when none (never for a challenge, which is none of these)."""
    if any(r.alone for r in results) and all(r.verdict == "live" or r.unmoved for r in results):
        return "unmoved"
    if any(r.sure for r in results) and all(r.verdict == "live" or r.near for r in results):
        return "near"
    if any(r.verdict == "live" for r in results) and all(r.verdict == "live" or r.near_twice for r in results):
        return "near_twice"
    return ""


@dataclass
class VisitLiveness:
    observed: dict[str, deque]
    challenge: Challenge | None = None
    last_look: int = -10**9               # frame of the last liveness look
    looks: int = 0                        # liveness looks taken (the checks keep the newest max_looks)
    newest_look_s: float | None = None    # stream time of the last liveness look
    settled: Verdict | None = None        # once live or attack, it stays (and once not live for good: ``look``)
    published: bool = False               # a decision of the visit went out
    held: list = field(default_factory=list)      # (decision, stream time it was held at, whether it may retry)
    retrying: tuple | None = None         # (decision that went out insufficient, stream time its second chance ends)


class LivenessGate:
    def __init__(self, checks: list[LivenessCheck], config: LivenessConfig, challenge: bool = False,
                 rng: random.Random | None = None):
        """``checks``: built for the bundle (edge.liveness.checks.build_check); ``challenge``: each visit is also
        asked for a head movement the kiosk page shows."""
        self.checks, self.config, self.challenge = checks, config, challenge
        self.wait_s = max(config.max_wait_s, config.challenge_s) if challenge else config.max_wait_s
        self._rng = rng or random.SystemRandom()
        self.visits: dict[int, VisitLiveness] = {}
        self.looks_taken = 0                  # liveness looks since the kiosk started (benchmarks time them)
        self.check_s: Counter = Counter()     # check name -> seconds it took observing and judging looks

    @property
    def names(self) -> list[str]:
        return [check.name for check in self.checks] + (["challenge"] if self.challenge else [])

    def _visit(self, track: int) -> VisitLiveness:
        if track not in self.visits:
            challenge = (Challenge(self.config.challenge_turn, self.config.challenge_s, self._rng)
                         if self.challenge else None)
            self.visits[track] = VisitLiveness({name: deque(maxlen=self.config.max_looks) for name in self.names},
                                               challenge)
        return self.visits[track]

    def wants_look(self, track: int, frame: int) -> bool:
        visit = self._visit(track)
        done = visit.published and not visit.held and visit.retrying is None
        return visit.settled is None and not done and frame - visit.last_look >= self.config.look_gap

    def look(self, track: int, look: Look, vouch: Callable[[], str] | None = None) -> str:
        """Gives the visit's checks one look. ``vouch`` is asked before a live verdict settles: why a look it rests
        on is not the visit's person ("" when every one is). Then the visit's verdict is final and not live
        (``insufficient``, the reason with it), and the reason is returned: the face is someone else's, and the
        kiosk ends the visit."""
        visit = self._visit(track)
        results = {}
        for check in self._checks(visit):
            started = time.perf_counter()
            visit.observed[check.name].append(check.observe(look))
            results[check.name] = check.judge(list(visit.observed[check.name]))
            self.check_s[check.name] += time.perf_counter() - started
        visit.last_look, visit.newest_look_s = look.frame, look.time_s
        visit.looks += 1
        self.looks_taken += 1
        verdict = fuse(results, visit.looks)
        stray = vouch() if verdict.verdict == "live" and vouch is not None else ""
        if stray:
            visit.settled = replace(verdict, verdict="insufficient", stray=stray, stood_in="")
        elif verdict.verdict in SETTLED:
            visit.settled = verdict
        return stray

    def challenged(self, track: int) -> Challenge | None:
        """The visit's running challenge (its request shown on the page), None without one or once settled."""
        visit = self.visits.get(track)
        return visit.challenge if visit is not None and visit.settled is None else None

    def requests(self) -> dict[int, str]:
        """What the page asks of each visit whose verdict is unsettled: its challenge's request, or, for a decided
        visit waiting for its verdict, a slight turn of the head (planar needs one)."""
        asked = {}
        for track, visit in self.visits.items():
            if visit.settled is None and visit.challenge is not None:
                asked[track] = visit.challenge.request
            elif visit.settled is None and (visit.held or visit.retrying):
                asked[track] = TURN_REQUEST
        return asked

    def verdict(self, track: int) -> Verdict:
        visit = self.visits.get(track)
        if visit is None:
            return fuse({check.name: CheckResult("insufficient", 0.0, {}) for check in self.checks})
        return visit.settled or self._fused(visit)

    def newest_look_s(self, track: int) -> float | None:
        visit = self.visits.get(track)
        return visit.newest_look_s if visit is not None else None

    def hold(self, track: int, decision: Any, time_s: float, retry: bool = False) -> None:
        """Keeps ``decision`` (the visit's) until its verdict settles or the wait ends (``release``); with ``retry``,
        a release as insufficient is followed by a second chance (the module's docstring)."""
        self._visit(track).held.append((decision, time_s, retry))

    def release_now(self, track: int, decision: Any) -> Released:
        """``decision`` (the visit's, one that opens no door) goes out now with the verdict the visit's looks gave
        so far, waiting for nothing; the visit takes no more looks."""
        visit = self._visit(track)
        visit.published = True
        return Released(decision, self.verdict(track), visit.newest_look_s)

    def release(self, time_s: float) -> list[Released]:
        """Each held decision whose visit's verdict settled, or that waited ``wait_s`` (then with the verdict it
        has, insufficient at best); and each decision on its second chance whose verdict has now settled."""
        released = []
        for track, visit in self.visits.items():
            verdict = self.verdict(track) if visit.held or visit.retrying else None
            if visit.retrying is not None:
                decision, until = visit.retrying
                if verdict.verdict in SETTLED and time_s <= until:
                    released.append(Released(decision, verdict, visit.newest_look_s, again=True))
                if verdict.verdict in SETTLED or time_s >= until:
                    visit.retrying = None
            waiting = []
            for decision, since, retry in visit.held:
                if verdict.verdict in SETTLED or time_s - since >= self.wait_s:
                    released.append(Released(decision, verdict, visit.newest_look_s))
                    visit.published = True
                    if retry and verdict.verdict not in SETTLED and self.config.retry_s > 0:
                        visit.retrying = (decision, time_s + self.config.retry_s)
                else:
                    waiting.append((decision, since, retry))
            visit.held = waiting
        return released

    def reset(self) -> None:
        """Forgets every visit: a new stream begins (its tracks are numbered afresh)."""
        self.visits.clear()

    def end(self, track: int) -> list[Released]:
        """The visit ended: what it still holds, with the verdict it has; its looks are forgotten."""
        visit = self.visits.pop(track, None)
        if visit is None:
            return []
        verdict = visit.settled or self._fused(visit)
        return [Released(decision, verdict, visit.newest_look_s) for decision, _, _ in visit.held]

    def close(self) -> None:
        for check in self.checks:
            check.close()

    def _checks(self, visit: VisitLiveness) -> list:
        return self.checks + ([visit.challenge] if visit.challenge is not None else [])

    def _fused(self, visit: VisitLiveness) -> Verdict:
        return fuse({check.name: check.judge(list(visit.observed[check.name])) for check in self._checks(visit)},
                    visit.looks)
