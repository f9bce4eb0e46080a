"""Faces followed across frames: each track is one visit of one face to the camera.

A tracker takes each frame's detections and answers which track each continues, which are new, and which
visits ended. Its predicted boxes tell the detection strategy where to look next frame (``edge.faces.scan``). A
kiosk asks ``plan`` instead: a steady face (its last two detections landed within ``steady_motion`` of its width
per frame of where its motion carried it: a face standing still, or walking at an even pace) is looked for in one
frame of ``steady_every``, and rests in the others, its box carried on by its motion, as video analytics pipelines
run their detector on every n-th frame and let the tracker fill in.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from edge.faces.detect import Detection, box_iou
from edge.runtime.boards import TRACKERS, TrackingConfig

VELOCITY_SMOOTHING = 0.5      # weight of the newest frame-to-frame motion in a track's velocity
COAST_LOOKS = 2               # frames a lost face is still looked for where its track predicts it
MAX_EXTRAPOLATION = 3         # frames of motion a lost face's predicted box carries on (a person who stopped
                              # behind someone is not sent across the frame)
TIME_TOLERANCE_S = 1e-6       # frame times are index / fps: 15 frames at 30 fps must not read as 0.5000000001 s


@dataclass
class Track:
    id: int
    box: np.ndarray                      # x1, y1, x2, y2: the last detection's, or the prediction while coasting
    first_frame: int
    detection: Detection | None = None   # this frame's, None while coasting or resting
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))   # box change per frame
    hits: int = 1
    missed: int = 0                      # frames since the last detection
    gap: int = 0                         # frames it was lost before this frame's detection (0: seen last frame)
    confirmed: bool = False
    last_frame: int = 0
    last_seen_s: float = 0.0             # stream time of the last detection (seconds, the source's clock)
    rested: int = 0                      # frames since the last detection in which the steady face was not looked for
    # how far its last two detections landed from where its motion carried it, per frame, over its width
    surprises: tuple[float, ...] = ()

    def predicted(self) -> np.ndarray:
        """Next frame's box: the motion carried on, for at most MAX_EXTRAPOLATION frames of a lost face."""
        return self.box + self.velocity * min(self.missed + self.rested + 1, MAX_EXTRAPOLATION)

    @property
    def resting(self) -> bool:
        """It rests in this frame (not looked for, not lost): its box (``shown_box``) is where its motion carries it."""
        return self.detection is None and self.missed == 0 and self.rested > 0

    def shown_box(self) -> np.ndarray:
        """This frame's box: its detection's, or while it rests, where its motion carries it."""
        return self.detection.box if self.detection is not None else self.box + self.velocity * self.rested


@dataclass
class TrackUpdate:
    live: list[Track]       # every track still followed, confirmed or not
    ended: list[Track]      # confirmed tracks whose visit ended this frame


class IouTracker:
    """Greedy matching of detections to each track's constant-velocity prediction by box overlap.

    A track is confirmed (a visit) after ``confirm_hits`` detections without a gap; a confirmed track whose face
    has not been seen for ``max_missed_s`` seconds of the stream's time ends, before the frame's detections are
    matched (so a camera that delivered nothing for longer ends every visit, whoever stands there afterwards); an
    unconfirmed one ends at its first miss.
    """

    def __init__(self, config: TrackingConfig):
        self.config = config
        self.tracks: list[Track] = []
        self._ids = itertools.count(1)

    def expected_boxes(self) -> list[np.ndarray]:
        """Where the faces of tracks seen within the last COAST_LOOKS frames should be in the next frame; a face
        missing for longer (it turned away, or left) is left to the strategy's scan, not looked for every frame."""
        return [t.predicted() for t in self.tracks if t.missed < COAST_LOOKS]

    def plan(self, frame_index: int, busy: set[int] = frozenset()) -> tuple[list[np.ndarray], list[Track]]:
        """(``expected_boxes`` less those of the steady tracks that rest in this frame, those tracks): each steady
        track is looked for in one frame of ``steady_every``, counted from its last detection; a track in ``busy``
        (its visit wants a look in this frame) does not rest. With ``steady_every`` equal to the gaps between a
        visit's looks, the frames a visit wants looks in are those its face is looked for in anyway (on the 1080p
        2x2 mosaic of the stage clip: 1.7 looks around faces a frame, against 2.7 with one frame in three by track
        id and the visit's own frames besides)."""
        every, boxes, resting = self.config.steady_every, [], []
        for track in self.tracks:
            if track.missed >= COAST_LOOKS:
                continue
            if every > 1 and track.rested + 1 < every and track.id not in busy and self._steady(track):
                resting.append(track)
            else:
                boxes.append(track.predicted())
        return boxes, resting

    def _steady(self, track: Track) -> bool:
        """Seen in its last frame, with a motion measured over more than the frames that confirmed it, and found
        twice in a row where that motion carried it (still or at an even pace, not swerving)."""
        width = float(track.box[2] - track.box[0])
        return (track.confirmed and track.missed == 0 and track.hits > self.config.confirm_hits
                and (float(np.abs(track.velocity).max()) < self.config.steady_motion * width
                     or (len(track.surprises) == 2 and max(track.surprises) < self.config.steady_motion)))

    def update(self, detections: list[Detection], frame_index: int, time_s: float,
               resting: list[Track] = ()) -> TrackUpdate:
        """``time_s``: the frame's time in the source's clock (capture time for cameras, position for files);
        ``resting``: the tracks ``plan`` did not look for (unless a detection finds them anyway, not a miss)."""
        ended = self._expire(time_s)
        pairs = self._match(detections)
        matched = {t for t, _ in pairs}
        for track_index, det_index in pairs:
            self._continue(self.tracks[track_index], detections[det_index], frame_index, time_s)
        rest = {id(track) for track in resting}
        live = []
        for index, track in enumerate(self.tracks):
            if index not in matched:
                track.detection = None
                if id(track) in rest:
                    track.rested += 1
                else:
                    track.missed += 1
                if not track.confirmed:
                    continue
            live.append(track)
        used = {d for _, d in pairs}
        for index, det in enumerate(detections):
            if index not in used:
                live.append(Track(next(self._ids), det.box.astype(np.float32), frame_index, det,
                                  confirmed=self.config.confirm_hits <= 1, last_frame=frame_index,
                                  last_seen_s=time_s))
        self.tracks = live
        return TrackUpdate(live, ended)

    def _expire(self, time_s: float) -> list[Track]:
        """Drops the tracks not seen for more than ``max_missed_s`` before ``time_s``; returns the visits among them."""
        limit = self.config.max_missed_s + TIME_TOLERANCE_S
        expired = [t for t in self.tracks if time_s - t.last_seen_s > limit]
        self.tracks = [t for t in self.tracks if time_s - t.last_seen_s <= limit]
        return [t for t in expired if t.confirmed]

    def split(self, track: Track, frame_index: int) -> int:
        """The track's face turned out to be someone else's: it goes on as a new track (a new visit); returns
        the new id."""
        track.id, track.first_frame = next(self._ids), frame_index
        return track.id

    def finish(self) -> list[Track]:
        """Ends every visit still open (the stream ended)."""
        ended = [t for t in self.tracks if t.confirmed]
        self.tracks = []
        return ended

    def _match(self, detections: list[Detection]) -> list[tuple[int, int]]:
        if not self.tracks or not detections:
            return []
        boxes = np.stack([d.box for d in detections])
        # a face lost for a frame or two: the better of the predicted and the last seen box (it may have stopped);
        # lost for longer: only the prediction, so the next visitor stepping into the same place is a new track
        overlap = np.stack([np.maximum(box_iou(t.predicted(), boxes), box_iou(t.box, boxes))
                            if t.missed < COAST_LOOKS else box_iou(t.predicted(), boxes)
                            for t in self.tracks])                                     # tracks, detections
        pairs = []
        while overlap.size and overlap.max() >= self.config.match_iou:
            track_index, det_index = np.unravel_index(int(np.argmax(overlap)), overlap.shape)
            pairs.append((int(track_index), int(det_index)))
            overlap[track_index, :] = -1
            overlap[:, det_index] = -1
        return pairs + self._after_rest(boxes, pairs)

    def _after_rest(self, boxes: np.ndarray, pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """A track that rested may have moved further than its motion carried it (a swaying head): the nearest
        detection left unmatched whose centre lies within one box width of where the track was expected, at a like
        size, continues it, rather than starting a second track on the same face."""
        used_tracks, used = {t for t, _ in pairs}, {d for _, d in pairs}
        found = []
        for index, track in enumerate(self.tracks):
            if not track.rested or index in used_tracks:
                continue
            expected = track.predicted()
            width = float(expected[2] - expected[0])
            centre = (expected[:2] + expected[2:]) / 2
            near = [(float(np.linalg.norm((box[:2] + box[2:]) / 2 - centre)), d) for d, box in enumerate(boxes)
                    if d not in used and 2 / 3 <= float(box[2] - box[0]) / max(width, 1e-6) <= 3 / 2]
            near = [(distance, d) for distance, d in near if distance <= width]
            if near:
                det_index = min(near)[1]
                found.append((index, det_index))
                used.add(det_index)
        return found

    def _continue(self, track: Track, det: Detection, frame_index: int, time_s: float) -> None:
        box = det.box.astype(np.float32)
        frames = track.missed + track.rested + 1
        step = (box - track.box) / frames
        surprise = float(np.abs(step - track.velocity).max()) / max(float(box[2] - box[0]), 1.0)
        track.surprises = (*track.surprises[-1:], surprise)
        track.velocity = VELOCITY_SMOOTHING * step + (1 - VELOCITY_SMOOTHING) * track.velocity
        track.box, track.detection, track.last_frame, track.last_seen_s = box, det, frame_index, time_s
        track.hits += 1
        track.gap, track.missed, track.rested = track.missed, 0, 0
        if track.hits >= self.config.confirm_hits:
            track.confirmed = True


# Trackers by the board config's ``tracking.tracker``.

def build_tracker(config: TrackingConfig):
    return TRACKERS.get(config.tracker)(config)
