"""The ``planar`` liveness check: a face on paper or a screen moves as a plane; a head does not.

Each look keeps a small grey crop around the face (``observe``). Between looks PAIR_SPAN_S apart, image corners on the
face are followed there and back (edge.faces.planarity.follow_pair), and the best homography between their two
positions is fitted: what it leaves unexplained (parallax, over the face box's width) is near zero for anything
flat, however it is held, tilted or moved, and grows as a head turns, the nose moving against the cheeks and jaw.
A pair that shows most of the threshold but not all of it (LONGER_FROM) is measured again over LONGER_SPAN_S: a head
turning slowly shows twice the parallax over twice the time, a flat picture none however long.

The verdict is ``live`` once a pair of looks shows parallax at or above the board's ``liveness.planar_parallax``,
confirmed with the plane taken out (the second look warped onto the first, the corners followed again: what the
tracker got wrong because a picture moved far goes, a head's depth stays), and ``insufficient`` until then: a
person who stands still, or moves only sideways, shows none either, so a flat movement is not proof of an attack
(measured: docs/liveness.md). An insufficient verdict that saw little movement
says so (``unmoved``): a texture check sure of a still face may stand in for it. One whose parallax reached
LONGER_FROM of the threshold, and kept it with the plane taken out as a live one must, says so too (``near``): a
texture check sure of every look may stand in for the rest of the way; and one with two such pairs that share no
look (``near_twice``: a look gone wrong cannot make both), a texture check live on its mean. A replayed video of
the person turning their head shows parallax inside the screen and passes this check: that needs the challenge
(edge.liveness.challenge).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import cv2
import numpy as np

from edge.faces.planarity import FollowedPair, LookPair, follow_pair
from edge.liveness.checks import CheckContext, CheckResult, Look

PAIR_SPAN_S = 0.25        # seconds at least between the two looks of a measured pair (8 frames at 30 fps)
# A pair at or above this share of the threshold, and under it, is measured again against the newest look at least
# LONGER_SPAN_S before, and keeps the larger parallax (confirmed like any: edge.faces.planarity.FollowedPair); one
# still that near once confirmed makes the visit ``near`` (``PlanarCheck._near``). The share is what flat pictures
# rarely show measured once: the stage clip's frames held as photos, corners moved by up to a tenth of the frame,
# 0.0086 at the 99th percentile (python -m benchmarks.held_photos; 0.0090 with the corners spaced as now), 0.7 of
# 0.0125. Every look measured at both spans cost 5.7 ms a look where this costs 4.1 and one span 4.0
# (docs/liveness.md).
LONGER_FROM = 0.7
LONGER_SPAN_S = 2 * PAIR_SPAN_S
CROP_MARGIN = 0.5         # the crop reaches this share of the box's size beyond each side (room for the face to move)
MAX_BOX_WIDTH = 128       # a larger face is kept scaled down to this width: enough corners, little to store
# A visit below the threshold is ``unmoved`` (it wants only movement: edge.liveness.gate.fuse) while its largest
# motion stays under this many thresholds: a head whose view changed more shows about half of it as parallax (the
# stage clip's visits judged live: 0.018 of 0.025 and 0.017 of 0.033), so a face that moved more and showed less
# moved as a picture does. No pair measured is not unmoved either: nothing was seen.
STILL_MOTION = 2.0


@dataclass
class PlanarLook:
    grey: np.ndarray              # the crop, grey, at ``scale``
    origin: np.ndarray            # the crop's top-left corner in the frame, frame pixels
    scale: float                  # crop pixels per frame pixel
    box: np.ndarray               # the face box in the frame
    time_s: float                 # the look's stream time
    measured: bool = False        # whether ``pair`` was measured (once: the first time the look is judged)
    pair: LookPair | None = None  # this look against an earlier one (``_pair``; None: nothing could be followed)
    near: bool = False            # ``pair`` reaches LONGER_FROM of the threshold with the plane taken out (``_near``)
    partner_s: float | None = None    # the stream time of the look ``pair`` was measured against


class PlanarCheck:
    name = "planar"

    def __init__(self, context: CheckContext):
        self.threshold = context.board.liveness.planar_parallax

    def observe(self, look: Look) -> PlanarLook:
        box = np.asarray(look.detection.box, np.float64)
        width, height = box[2] - box[0], box[3] - box[1]
        frame_h, frame_w = look.image.shape[:2]
        x1, y1 = max(int(box[0] - CROP_MARGIN * width), 0), max(int(box[1] - CROP_MARGIN * height), 0)
        x2 = min(int(box[2] + CROP_MARGIN * width) + 1, frame_w)
        y2 = min(int(box[3] + CROP_MARGIN * height) + 1, frame_h)
        scale = min(1.0, MAX_BOX_WIDTH / max(width, 1.0))
        crop = look.image[y1:y2, x1:x2]
        grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop.copy()
        if scale < 1.0:
            grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        return PlanarLook(grey, np.array([x1, y1], np.float64), scale, box, look.time_s)

    def judge(self, observed: list[PlanarLook]) -> CheckResult:
        measured = [pair for pair in (self._pair(observed, index) for index in range(1, len(observed))) if pair]
        if not measured:
            return CheckResult("insufficient", 0.0, {"pairs": 0, "threshold": self.threshold})
        parallax, motion = max(pair.parallax for pair in measured), max(pair.motion for pair in measured)
        evidence = {"pairs": len(measured), "parallax": round(parallax, 4), "motion": round(motion, 4),
                    "threshold": self.threshold}
        if parallax >= self.threshold:
            return CheckResult("live", parallax, evidence)
        unmoved = bool(motion < STILL_MOTION * self.threshold)
        near_looks = [look for look in observed if look.near]
        near, twice = bool(near_looks), _two_apart(near_looks)
        return CheckResult("insufficient", parallax,
                           {**evidence, "unmoved": unmoved, "near": near, "near_twice": twice},
                           unmoved=unmoved, near=near, near_twice=twice)

    def _pair(self, observed: list[PlanarLook], index: int) -> LookPair | None:
        """The measurement between look ``index`` and the newest look at least PAIR_SPAN_S before it (the first,
        while none is that old), made once, when the look is new: the gate judges after every look, and a look
        keeps its pair after its partner has left the visit's newest looks. (Measuring one look in two, pairs end
        to end, halved the cost and lost a live visit of the stage clip: 0.012 where this found 0.018.) A parallax
        that reaches the threshold is confirmed with the plane taken out (edge.faces.planarity.FollowedPair); one
        that comes close is measured again over LONGER_SPAN_S, and the larger kept."""
        later = observed[index]
        if not later.measured:
            earlier = _partner(observed, index, PAIR_SPAN_S) or observed[0]
            followed = follow_looks(earlier, later)
            pair = followed.settled(self.threshold) if followed is not None else None
            if (pair is not None and LONGER_FROM * self.threshold <= pair.parallax < self.threshold
                    and (longer := _partner(observed, index, LONGER_SPAN_S)) is not None and longer is not earlier
                    and (again := follow_looks(longer, later)) is not None
                    and (settled := again.settled(self.threshold)) is not None and settled.parallax > pair.parallax):
                pair, followed, earlier = settled, again, longer
            later.pair, later.measured, later.partner_s = pair, True, earlier.time_s
            later.near = pair is not None and self._near(followed, pair)
        return later.pair

    def _near(self, followed: FollowedPair, pair: LookPair) -> bool:
        """Whether ``pair`` (``followed`` settled) is live, or reaches LONGER_FROM of the threshold with the plane
        taken out as a live pair's is (what a strongly tilted picture's tracking errors give measured once must not
        count as near)."""
        near_at = LONGER_FROM * self.threshold
        if pair.parallax < near_at or pair.parallax >= self.threshold:
            return pair.parallax >= self.threshold
        confirmed = followed.confirmed()
        return confirmed is not None and confirmed.parallax >= near_at

    def close(self) -> None:
        """Nothing to release: the check runs no model."""


def _two_apart(near_looks: list[PlanarLook]) -> bool:
    """Whether two of these looks' pairs share no look: one look gone wrong (a glare, a blur, a detection that
    jumped) can make each pair it is in come near, never two that do not meet."""
    pairs = [{look.partner_s, look.time_s} for look in near_looks]
    return any(not first & second for first, second in itertools.combinations(pairs, 2))


def _partner(observed: list[PlanarLook], index: int, span_s: float) -> PlanarLook | None:
    """The newest look at least ``span_s`` before look ``index``; None while none is that old."""
    return next((look for look in reversed(observed[:index]) if observed[index].time_s - look.time_s >= span_s), None)


def follow_looks(first: PlanarLook, second: PlanarLook) -> FollowedPair | None:
    """The first look's face followed into the second (edge.faces.planarity.follow_pair), over the region both crops
    hold, at the first crop's scale; None when they share too little or too few corners could be followed."""
    ratio = first.scale / second.scale
    grey_b = second.grey if ratio == 1.0 else cv2.resize(second.grey, None, fx=ratio, fy=ratio,
                                                          interpolation=cv2.INTER_AREA)
    # both crops in the first's pixels: each one's corner, relative to the frame origin scaled by first.scale
    corner_a, corner_b = first.origin * first.scale, second.origin * first.scale
    top_left = np.maximum(corner_a, corner_b)
    bottom_right = np.minimum(corner_a + first.grey.shape[1::-1], corner_b + grey_b.shape[1::-1])
    if np.any(bottom_right - top_left < 16):
        return None
    (ax, ay), (bx, by) = (top_left - corner_a).astype(int), (top_left - corner_b).astype(int)
    w, h = (bottom_right - top_left).astype(int)
    region_a, region_b = first.grey[ay:ay + h, ax:ax + w], grey_b[by:by + h, bx:bx + w]
    if region_a.shape != region_b.shape:
        size = (min(region_a.shape[1], region_b.shape[1]), min(region_a.shape[0], region_b.shape[0]))
        region_a, region_b = region_a[:size[1], :size[0]], region_b[:size[1], :size[0]]
    box = first.box * first.scale - np.tile(top_left, 2)
    return follow_pair(region_a, region_b, box)
