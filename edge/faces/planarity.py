"""How far a face's movement between two looks is from that of a flat picture: the ``planar`` liveness check's
measurement, on image points tracked on the face itself.

A photo on paper or a screen is a plane: however it is held, tilted or moved, one homography maps its points in
one look onto the next. A head is not: as it turns, the nose moves against the cheeks and jaw (parallax), and no
homography explains that. Corners on the face are followed from one look into the next by pyramidal
Lucas-Kanade and kept only when tracking back lands where they started; then

- ``motion``: what the best similarity (shift, turn, scale) leaves unexplained: how much the view changed at all
  (two looks from the same view say nothing either way);
- ``parallax``: what the best homography leaves unexplained: near zero for a plane, whatever its motion.

Both are the median distance over the points, over the face box's width, to a fit found by RANSAC: a glare or a
screen's moire that slides over a held picture moves a few points against the rest, and must not read as
parallax; a turning head moves most of them so. (The mean square over every point, measured first, let such
points through: on rendered attack clips a third of prints passed at the same threshold.)

A pair that seems to leave a plane is measured again with the plane taken out (``confirm_at``): the second look
is warped onto the first by the homography found, and the corners are followed again. Lucas-Kanade's errors grow
with how far and how unevenly a picture moved between looks (a photo tilted fast, a screen turned away), and the
first measurement reads them as parallax; once the warp is undone they are gone, while what a head's depth makes
stays (it is no homography, so no warp undoes it). Measured on the stage clip's frames held as photos at two
tilts, corners moved by up to a fifth of the frame (python -m benchmarks.held_photos): the first measurement alone
reached 0.0148 of the box's width; confirmed, it stays under 0.0045 (docs/liveness.md).

Dense landmarks from a face model (MediaPipe's face mesh) were measured first and dropped: the mesh is not
equivariant under perspective and reads a strongly tilted photo as a turned head (held photos tilted by 20 % of
the frame reached the parallax of live ORL head turns); points tracked on the image are carried by a plane exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FIT_TOLERANCE_PX = 1.0     # RANSAC's inlier distance, in the (at most 128 px wide) face crop's pixels


@dataclass(frozen=True)
class LookPair:
    motion: float       # median residual of the best similarity, over the scale
    parallax: float     # median residual of the best homography, over the scale


def point_pair(first: np.ndarray, second: np.ndarray, scale: float) -> LookPair | None:
    """``first`` and ``second``: (N, 2) positions of the same N points in two looks; ``scale``: what the residuals
    are divided by (the face box's width). None when the fits fail (too few or degenerate points)."""
    measured = _measured(np.asarray(first, np.float64)[:, :2], np.asarray(second, np.float64)[:, :2], scale)
    return measured[0] if measured is not None else None


def _measured(a: np.ndarray, b: np.ndarray, scale: float) -> tuple[LookPair, np.ndarray] | None:
    """(``point_pair``'s measurement, the homography it fitted); None when the fits fail."""
    similarity, _ = cv2.estimateAffinePartial2D(a, b, method=cv2.RANSAC, ransacReprojThreshold=FIT_TOLERANCE_PX)
    homography, _ = cv2.findHomography(a, b, cv2.RANSAC, FIT_TOLERANCE_PX)
    if similarity is None or homography is None:
        return None
    return LookPair(_median(cv2.transform(a[None], similarity)[0] - b) / scale,
                    _median(cv2.perspectiveTransform(a[None], homography)[0] - b) / scale), homography


def _median(residual: np.ndarray) -> float:
    return float(np.median(np.linalg.norm(residual, axis=1)))


# Corners sought in the face box of the first look, at least CORNER_SPACING_PX apart: 100 so spaced refused fewer
# live visits than 200 at 2 px (100 at 2 px, many more), for half the tracking (docs/liveness.md, "100 corners 4 px
# apart"). Each corner is followed in a 15x15 window: corners 2 px apart share most of theirs.
TRACKED_POINTS = 100
CORNER_SPACING_PX = 4
MIN_TRACKED = 12          # fewer points followed both ways than this: no measurement
ROUND_TRIP_PX = 0.5       # a point is kept when tracking it back lands this close to where it started
# What a similarity leaves of the points' movement, over the box width, beyond which the tracking failed (a glare or a
# screen's brightness swept the face, a detection jumped): a head between two looks leaves a few hundredths (the
# stage clip's largest, per visit: 0.076); a rendered screen whose glare swept it, 0.22.
MAX_MOTION = 0.15


def tracked_pair(first: np.ndarray, second: np.ndarray, box: np.ndarray,
                 confirm_at: float | None = None) -> LookPair | None:
    """Motion and parallax of image corners inside ``box`` (the face in ``first``, x1 y1 x2 y2) followed into
    ``second`` (both BGR or both grey, one size), over the box's width; None when too few corners could be followed
    there and back, or when what they did is no face's movement (tracking that failed). A parallax at or above
    ``confirm_at`` is measured again with the plane taken out (the module's docstring), and the pair keeps the
    smaller of the two; None when the corners cannot be followed then."""
    followed = follow_pair(first, second, box)
    return followed.settled(confirm_at) if followed is not None else None


@dataclass(frozen=True)
class FollowedPair:
    """A pair of looks measured once (``pair``), with what measuring it again with the plane taken out needs."""

    pair: LookPair
    grey_a: np.ndarray
    grey_b: np.ndarray
    start: np.ndarray             # the corners sought in the first look
    width: float                  # the face box's, what the residuals are divided by
    homography: np.ndarray        # the plane the corners' movement was fitted to

    def settled(self, confirm_at: float | None) -> LookPair | None:
        """The pair as measured, or ``confirmed`` when its parallax reaches ``confirm_at`` (None: never)."""
        return self.pair if confirm_at is None or self.pair.parallax < confirm_at else self.confirmed()

    def confirmed(self) -> LookPair | None:
        """The pair with the plane taken out: the second look warped onto the first by the homography found, the
        corners followed again; it keeps the smaller parallax. None when the corners cannot be followed then."""
        unwarped = cv2.warpPerspective(self.grey_b, self.homography, self.grey_a.shape[::-1],
                                       flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
        again = _follow(self.grey_a, unwarped, self.start)
        left = point_pair(*again, self.width) if again is not None else None
        return LookPair(self.pair.motion, min(self.pair.parallax, left.parallax)) if left is not None else None


def follow_pair(first: np.ndarray, second: np.ndarray, box: np.ndarray) -> FollowedPair | None:
    """``tracked_pair``'s measurement made once, kept with what confirming it needs; None as there."""
    grey_a, grey_b = (image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
                      for image in (first, second))
    x1, y1, x2, y2 = np.round(box).astype(int)
    start = _corners(grey_a, x1, y1, x2, y2)
    if start is None or len(start) < MIN_TRACKED:
        return None
    followed = _follow(grey_a, grey_b, start)
    if followed is None:
        return None
    width = float(x2 - x1)
    measured = _measured(*followed, width)
    if measured is None or measured[0].motion > MAX_MOTION:
        return None
    return FollowedPair(measured[0], grey_a, grey_b, start, width, measured[1])


# Corners are sought in the box and this many pixels around it: the corner measure at a pixel reads the pixels two
# away (a 3x3 gradient summed over a 3x3 block), and a corner must beat its neighbours one further, so these are the
# corners sought over the whole crop with the box as mask (on 378 pairs of the liveness benchmark, all but one corner
# of one pair, a pixel off: rounding), for the box's area, a quarter of the crop's.
CORNER_REACH_PX = 4


def _corners(grey: np.ndarray, x1: int, y1: int, x2: int, y2: int) -> np.ndarray | None:
    """The TRACKED_POINTS strongest corners of ``grey`` inside the box x1 y1 x2 y2, CORNER_SPACING_PX apart
    (goodFeaturesToTrack's (N, 1, 2) float32), None when there are none."""
    height, width = grey.shape
    left, top = min(max(x1 - CORNER_REACH_PX, 0), width), min(max(y1 - CORNER_REACH_PX, 0), height)
    right, bottom = max(min(x2 + CORNER_REACH_PX, width), left), max(min(y2 + CORNER_REACH_PX, height), top)
    region = grey[top:bottom, left:right]
    if region.size == 0:
        return None
    mask = np.zeros_like(region)
    mask[max(y1, 0) - top:max(y2, 0) - top, max(x1, 0) - left:max(x2, 0) - left] = 255
    found = cv2.goodFeaturesToTrack(region, TRACKED_POINTS, 0.01, CORNER_SPACING_PX, mask=mask)
    return found + np.array([left, top], np.float32) if found is not None else None


def _follow(grey_a: np.ndarray, grey_b: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(positions in ``grey_a``, positions in ``grey_b``) of the ``start`` corners followed there and back; None when
    fewer than MIN_TRACKED were. Only the corners found there are followed back (each corner is tracked on its own:
    the rest would be dropped anyway)."""
    flow = {"winSize": (15, 15), "maxLevel": 3}
    there, found, _ = cv2.calcOpticalFlowPyrLK(grey_a, grey_b, start, None, **flow)
    found = found[:, 0] == 1
    if found.sum() < MIN_TRACKED:
        return None
    start, there = start[found], there[found]
    back, found_back, _ = cv2.calcOpticalFlowPyrLK(grey_b, grey_a, there, None, **flow)
    kept = (found_back[:, 0] == 1) & (np.linalg.norm(back - start, axis=2)[:, 0] < ROUND_TRIP_PX)
    if kept.sum() < MIN_TRACKED:
        return None
    return start[kept, 0].astype(np.float64), there[kept, 0].astype(np.float64)
