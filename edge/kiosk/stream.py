"""The kiosk over a stream of frames: look where the board's strategy says, track, and decide each visit once.

``edge.faces.pipeline`` knows the models, the gallery and the thresholds; this module adds time: a detection strategy
(``edge.faces.scan``), a tracker (``edge.faces.tracking``) and the evidence of each visit (``edge.kiosk.visits``). The
tracker chooses where detection looks next and when a visit's face is embedded again; a face found again after it was
lost is looked at once more, and if it is not the visit's person (say the next visitor stepped into the same place),
the visit is decided and a new one begins. Visits live in the source's time: a camera that delivers no frame for
longer than the tracker's ``max_missed_s`` (or whose reads time out, ``finish``) ends every open visit, marked as cut
short, so no visit spans an outage. With liveness (edge.liveness.gate), each visit also takes liveness looks, and its
decision is published when its liveness verdict settles or its wait ends, carrying the verdict; a named one (the only
kind a door opens for) that went out ``insufficient`` is published once more, marked ``rejudged``, if the visit's
verdict settles in its second chance (``liveness.retry_s``). Without liveness, every decision says liveness ``off``.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, replace

import numpy as np

from edge.base.errors import UserError
from edge.faces.pipeline import Pipeline, ms_since
from edge.faces.quality import crop_problem, geometry_problem
from edge.faces.scan import build_strategy
from edge.faces.tracking import Track, build_tracker
from edge.kiosk.visits import VisitDecision, VisitJudge
from edge.liveness.checks import Look
from edge.liveness.gate import OFF, LivenessGate, Released
from edge.runtime.boards import DetectionConfig, TrackingConfig

STREAM_STAGES = ("detect", "track", "judge", "liveness", "total")


@dataclass
class StreamStep:
    faces: list[Track]                 # confirmed tracks in this frame, detected or resting (what a display draws:
                                       # Track.shown_box)
    decisions: list[VisitDecision]     # visits decided in this frame
    embedded: int                      # faces embedded in this frame
    timings_ms: dict[str, float]


class KioskStream:
    def __init__(self, pipeline: Pipeline, detection: DetectionConfig | None = None,
                 tracking: TrackingConfig | None = None, unknown_threshold: float | None = None,
                 liveness: LivenessGate | None = None, door_outcomes: tuple[str, ...] = ("named",)):
        """``liveness``: the kiosk's liveness checks (None: off, every decision says so); ``door_outcomes``: the
        outcomes that may open a door (named): their decisions wait for the visit's verdict, and one gone out
        insufficient is judged again; any other decision goes out at once with the verdict the visit's looks gave
        so far, and its visit takes no more looks (benchmarks judge every visit as if it could open one)."""
        self.door_outcomes = door_outcomes
        board = pipeline.streaming
        self.liveness = liveness
        self.pipeline = pipeline
        self.detection = detection or (board.detection if board else DetectionConfig())
        self.tracking = tracking or (board.tracking if board else TrackingConfig())
        self.strategy = build_strategy(self.detection, pipeline.faces.detectors)
        self.tracker = build_tracker(self.tracking)
        self._unknown_threshold = unknown_threshold
        thresholds = self._thresholds()
        if unknown_threshold is not None and unknown_threshold > thresholds.match:
            raise UserError(f"--unknown_threshold {unknown_threshold} is above the match threshold "
                            f"{thresholds.match:.4f}: a visitor between them would be both named and a stranger; "
                            f"give a value at or below it")
        self.judge = VisitJudge(self.tracking, thresholds, self._closest, pipeline.matcher.identity_score)
        self.last_frame = -1
        self.last_time_s: float | None = None
        self._recheck: set[int] = set()     # tracks whose next good look is compared with their visit so far
        self._unvouched: dict[int, deque] = {}      # track -> aligned faces of its liveness looks not yet vouched for

    @property
    def thresholds(self):
        return self.judge.thresholds

    def _thresholds(self):
        thresholds = self.pipeline.matcher.visit_thresholds(self.tracking.unknown_far)
        if self._unknown_threshold is not None:
            # refused above the match threshold at the start; a gallery that shrinks while the kiosk runs lowers
            # the match threshold under it, and then the two are one
            thresholds = replace(thresholds, unknown=min(self._unknown_threshold, thresholds.match))
        return thresholds

    def reload_gallery(self) -> None:
        """The gallery changed (someone enrolled or was removed): new templates, thresholds for its new size."""
        self.pipeline.matcher.reload()
        self.judge.thresholds = self._thresholds()

    def _closest(self, embedding: np.ndarray) -> tuple[str | None, float]:
        _, score, best = self.pipeline.matcher.match(embedding)
        return best, score

    def step(self, image: np.ndarray, frame_index: int, time_s: float) -> StreamStep:
        """One frame at ``time_s`` in the source's clock (capture time for cameras, position for files)."""
        timings = dict.fromkeys(STREAM_STAGES, 0.0)
        start = time.perf_counter()
        decisions, embedded = [], 0
        if self.last_time_s is not None and time_s - self.last_time_s > self.tracking.max_missed_s:
            decisions += self.finish(f"the camera delivered no frame for {time_s - self.last_time_s:.1f} s")
        boxes, resting = self.tracker.plan(frame_index, self._busy(frame_index))
        detections = self.strategy.detect(image, frame_index, boxes)
        timings["detect"] = ms_since(start)
        mark = time.perf_counter()
        update = self.tracker.update(detections, frame_index, time_s, resting)
        timings["track"] = ms_since(mark)
        mark = time.perf_counter()
        shown = [t for t in update.live if t.confirmed and (t.detection is not None or t.resting)]
        faces = [t for t in shown if t.detection is not None]       # looks are taken only on what was detected
        held, ended = [], [t.id for t in update.ended]
        for track in faces:
            sample = self._sample(image, track, frame_index, time_s, held, ended)
            embedded += sample is not None
            if self._wants_liveness_look(track.id, frame_index):
                timings["liveness"] += self._liveness_look(image, track, frame_index, time_s, sample, held, ended)
        held += [d for t in update.ended if (d := self.judge.end(t.id, frame_index, t.box))]
        timings["judge"] = ms_since(mark) - timings["liveness"]
        decisions += self._published(held, ended, frame_index, time_s)
        timings["total"] = ms_since(start)
        self.last_frame, self.last_time_s = frame_index, time_s
        return StreamStep(shown, decisions, embedded, timings)

    def _sample(self, image: np.ndarray, track: Track, frame_index: int, time_s: float, held: list,
                ended: list) -> np.ndarray | None:
        """The visit's look in this frame, if it wants one (a sample, or a recheck of a face found again): adds a
        decision it settles to ``held`` and a visit someone else took over to ``ended``; returns the face's
        embedding, or None when it was not embedded."""
        if track.gap and self.judge.sampled(track.id):
            self._recheck.add(track.id)        # found again after a while: is it still the same person?
        checking = track.id in self._recheck
        if not checking and not self.judge.wants_sample(track.id, frame_index):
            return None
        look = self._look(image, track, frame_index)
        if look is None:
            return None
        embedding, aligned = look
        if checking:
            self._recheck.discard(track.id)
            if self._stray(track.id, [embedding]):
                self._someone_else(track, frame_index, held, ended)     # a new visit, this look its first
            elif not self.judge.wants_sample(track.id, frame_index):
                return embedding
        decision = self.judge.add_sample(track.id, frame_index, time_s, embedding, track.box, aligned)
        if decision:
            held.append(decision)
        return embedding

    def _wants_liveness_look(self, track: int, frame_index: int) -> bool:
        """Liveness looks begin with the visit's first sample (a face that passed the quality gate), taken in the
        same frame: a visit whose faces are all turned away or blurred can name no one, and on the 1080p 2x2 mosaic
        of the stage clip such visits took two thirds of the time liveness looks took."""
        return self.liveness is not None and self.judge.sampled(track) and self.liveness.wants_look(track, frame_index)

    def _busy(self, frame_index: int) -> set[int]:
        """The visits that want a look in this frame (an embedding, a liveness look, a recheck): their faces do not
        rest, so looks keep their pace and liveness its span between looks."""
        return {t.id for t in self.tracker.tracks if t.confirmed and (
            t.id in self._recheck or self.judge.wants_sample(t.id, frame_index)
            or self._wants_liveness_look(t.id, frame_index))}

    def _look(self, image: np.ndarray, track: Track, frame_index: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(the face's embedding, its aligned crop), or None (the reason recorded with its visit) when it fails
        the quality gate."""
        problem = geometry_problem(track.detection, self.tracking)
        aligned = None if problem else self.pipeline.faces.align(image, track.detection)
        problem = problem or crop_problem(aligned, self.tracking)
        if problem:
            self.judge.reject(track.id, frame_index, problem)
            return None
        return self.pipeline.faces.embed_aligned([aligned])[0], aligned

    def _liveness_look(self, image: np.ndarray, track: Track, frame_index: int, time_s: float,
                       sample: np.ndarray | None, held: list, ended: list) -> float:
        """Gives the visit's liveness checks this look (a face too small to judge is skipped), and returns the
        milliseconds it took. A look must be of the visit's person: in a frame where the visit took a sample (its
        embedding ``sample``), the sample is checked with its decision; while the visit's challenge runs, every look
        is checked as it is taken (with the sample's embedding, when there is one), and one of someone else fails
        the challenge; any other look is kept aligned, and embedded and checked
        only when a live verdict would rest on it (the gate's vouch), so looks that settle nothing cost no
        embedding. A look of someone else found then ends the visit, not live, and the face goes on as a new visit
        (``_someone_else``)."""
        start = time.perf_counter()
        box = track.detection.box
        if box[3] - box[1] >= self.tracking.min_face:
            challenge = self.liveness.challenged(track.id)
            if challenge is not None:
                embeddings = ([sample] if sample is not None else
                              self.pipeline.faces.embed_aligned([self.pipeline.faces.align(image, track.detection)]))
                stray = self._stray(track.id, embeddings)
                if stray:
                    challenge.stray = f"a look during the challenge {stray}"
            elif sample is None:
                self._unvouched.setdefault(track.id, deque(maxlen=self.liveness.config.max_looks)).append(
                    self.pipeline.faces.align(image, track.detection))
            if self.liveness.look(track.id, Look(image, track.detection, time_s, frame_index),
                                  vouch=lambda: self._vouch(track.id)):
                self._someone_else(track, frame_index, held, ended)
        return ms_since(start)

    def _vouch(self, track_id: int) -> str:
        """Why one of the visit's looks kept for vouching is not its person ("" when every one is)."""
        looks = self._unvouched.get(track_id)
        stray = self._stray(track_id, self.pipeline.faces.embed_aligned(list(looks))) if looks else ""
        return f"a look its live verdict rests on {stray}: someone else in its place" if stray else ""

    def _stray(self, track_id: int, embeddings) -> str:
        """Why one of ``embeddings`` (faces in the visit's place) is not the visit's person ("" when every one is)."""
        mean = self.judge.mean_embedding(track_id)
        for embedding in embeddings if mean is not None else []:
            score = self.pipeline.matcher.pair_score(embedding, mean)
            if score < self.thresholds.same_person:
                return (f"scores {score:.4f} against the visit, below the same-person threshold "
                        f"{self.thresholds.same_person:.4f}")
        return ""

    def _someone_else(self, track: Track, frame_index: int, held: list, ended: list) -> None:
        """The face in the visit's place is someone else's: the visit ends (its decision, if it had none, to
        ``held``) and the face goes on as a new visit."""
        held += [d for d in [self.judge.end(track.id, frame_index, track.box)] if d]
        ended.append(track.id)
        self.tracker.split(track, frame_index)

    def _published(self, decided: list[VisitDecision], ended: list[int], frame_index: int,
                   time_s: float) -> list[VisitDecision]:
        """The decisions to publish now: without liveness, those just made (liveness off); with it, those just made
        that open no door, those whose visit's verdict settled or whose wait ended, and those of visits that ended,
        each with its verdict."""
        if self.liveness is None:
            for decision in decided:
                decision.liveness = OFF.record()
            return decided
        released = []
        for decision in decided:
            if decision.outcome in self.door_outcomes:
                self.liveness.hold(decision.track, decision, time_s, retry=not decision.interrupted)
            else:
                released.append(self.liveness.release_now(decision.track, decision))
        for track in ended:
            self._unvouched.pop(track, None)
        released += [item for track in ended for item in self.liveness.end(track)] + self.liveness.release(time_s)
        return [self._with_verdict(item, frame_index) for item in released]

    @staticmethod
    def _with_verdict(item: Released, frame_index: int) -> VisitDecision:
        decision = item.decision
        if item.again:        # the first release went out as it was; this one is its own decision
            decision = replace(decision, door=None, rejudged=True,
                               reason=f"{decision.reason}; liveness settled after a second chance")
        decision.liveness, decision.frame = item.verdict.record(), max(decision.frame, frame_index)
        newest = item.newest_look_s
        if newest is not None and (decision.look_time_s is None or newest > decision.look_time_s):
            decision.look_time_s = newest          # the door's age check reads the visit's newest look
        return decision

    def finish(self, interrupted: str = "") -> list[VisitDecision]:
        """The stream ended, or was cut when ``interrupted`` says why (no frames, the kiosk stopping): a decision
        for every visit still open, on what it has; a cut visit is marked so, spans no gap and opens no door."""
        self._recheck.clear()
        tracks = self.tracker.finish()
        decided = [d for t in tracks if (d := self.judge.end(t.id, self.last_frame, t.box, interrupted))]
        return self._published(decided, [t.id for t in tracks], self.last_frame, self.last_time_s or 0.0)

    def describe(self) -> dict:
        return {"strategy": self.detection.strategy, "tracker": self.tracking.tracker,
                "match_threshold": round(self.thresholds.match, 4),
                "unknown_threshold": round(self.thresholds.unknown, 4),
                "liveness": self.liveness.names if self.liveness is not None else "off"}

