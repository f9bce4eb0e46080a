"""The ``challenge`` liveness check (active, per kiosk): the page asks the person for a short head movement, and the
head pose read from the detector's key points must follow it in time.

The pose is where the nose sits against the eyes and the mouth, in affine coordinates: ``turn`` along the line
from one eye to the other (0 between the eyes, over the eye distance), ``lift`` along the line from the eyes'
midpoint to the mouth. Any flat picture keeps both however it is held, tilted or moved (an affine map keeps
affine coordinates, and a perspective one nearly so); a head that turns or looks up changes them. So the request
is followed only by a head, or by a video of one that happens to do what was asked, in the time allowed.

``turn`` grows as the nose moves to the image's right, which is the person's left when the camera faces them. A
pose no head takes (the nose beyond an eye, or above the eyes or below the mouth by half their distance) is a
detector's glitch and is left out. A request is measured from where the head first held still: the median of the
first three poses in a row that agree within the movement asked for (glare on a replayed screen, or a head already
moving, makes the first poses scatter, and a start read from them was once "answered" by a photo on a tablet as
the glare moved off it). It counts as followed only when two looks in a row show it: one stray set of key points
neither starts nor answers a challenge.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from edge.liveness.checks import CheckResult, Look

MAX_TURN = 1.0                 # |turn| beyond this: the nose outside the eyes, not a head the detector read well
LIFT_RANGE = (-0.5, 1.5)       # lift outside this: the nose far above the eyes or below the mouth
START_POSES = 3                # the pose a request is measured from: the median of the first ones in a row that agree

# request -> (pose coordinate, the sign its change must have), as the page words them
REQUESTS = {
    "turn your head to your left": ("turn", 1.0),
    "turn your head to your right": ("turn", -1.0),
    "look up": ("lift", -1.0),
}


@dataclass(frozen=True)
class Pose:
    turn: float
    lift: float
    time_s: float


def head_pose(keypoints: np.ndarray, time_s: float) -> Pose | None:
    """The nose's affine coordinates against the eyes and the mouth (BlazeFace's first four key points, image
    order: eye, eye, nose, mouth); None when the points are degenerate."""
    eye_a, eye_b, nose, mouth = np.asarray(keypoints, np.float64)[:4, :2]
    middle = (eye_a + eye_b) / 2
    basis = np.column_stack([eye_b - eye_a, mouth - middle])
    if abs(np.linalg.det(basis)) < 1e-6:
        return None
    turn, lift = np.linalg.solve(basis, nose - middle)
    if abs(turn) > MAX_TURN or not LIFT_RANGE[0] < lift < LIFT_RANGE[1]:
        return None
    return Pose(float(turn), float(lift), time_s)


class Challenge:
    """One visit's request and how its poses answered it. Not followed in time is ``insufficient`` (a person may not
    have read it); ``stray`` is set when a look stopped being the visit's person (the stream checks each look's
    embedding while a challenge runs): someone showed one face and moved another, an ``attack``."""

    name = "challenge"

    def __init__(self, needed: float, allowed_s: float, rng: random.Random):
        self.request = rng.choice(sorted(REQUESTS))
        self.needed, self.allowed_s = needed, allowed_s
        self.stray = ""

    def observe(self, look: Look) -> Pose | None:
        return head_pose(look.detection.keypoints, look.time_s)

    def judge(self, observed: list[Pose | None]) -> CheckResult:
        poses = [pose for pose in observed if pose is not None]
        evidence = {"request": self.request, "needed": self.needed}
        if self.stray:
            return CheckResult("attack", 0.0, {**evidence, "stray": self.stray})
        if len(poses) < START_POSES + 1:
            return CheckResult("insufficient", 0.0, evidence)
        axis, sign = REQUESTS[self.request]
        values = [getattr(pose, axis) for pose in poses if pose.time_s - poses[0].time_s <= self.allowed_s]
        still = next((index for index in range(len(values) - START_POSES)
                      if np.ptp(values[index:index + START_POSES]) <= self.needed), None)
        if still is None:
            evidence["why"] = "the head never held still to start from"
            return CheckResult("insufficient", 0.0, evidence)
        start = float(np.median(values[still:still + START_POSES]))
        moved = [sign * (value - start) for value in values[still:]]
        followed = max(min(pair) for pair in zip(moved, moved[1:]))        # held for two looks in a row
        evidence["followed"] = round(followed, 4)
        if followed >= self.needed:
            return CheckResult("live", followed, evidence)
        if poses[-1].time_s - poses[0].time_s > self.allowed_s:
            evidence["why"] = f"not followed within {self.allowed_s:g} s"
        return CheckResult("insufficient", followed, evidence)

    def close(self) -> None:
        """Nothing to release."""
