"""``python -m benchmarks.held_photos --video V``: the planar liveness check's parallax on flat pictures, measured
once and confirmed: what ``liveness.planar_parallax`` is set above.

Each frame of the video (every ``--step``) is held as a photo at two tilts, each corner of the frame moved by up
to a share of its size (``--spreads``; the two tilts drawn from a generator seeded anew for each spread). Each face
of at least ``--min_face`` px the detector finds in the first tilt is followed into the second by the planar
measurement (edge.faces.planarity.tracked_pair): the picture is flat, so any parallax it reports is the
measurement's own error. Printed per spread: the pairs measured, and the 95th and 99th percentiles and the largest
parallax, measured once (as before planar confirmed its pairs) and confirmed (as the kiosk measures a pair that
reaches the board's threshold). Nothing is written.
"""
from __future__ import annotations

import argparse
import sys

import cv2
import numpy as np

from edge.base.errors import UserError
from edge.base.flags import count
from edge.base.interrupts import interruptible
from edge.base.progress import progress_bar
from edge.faces.packaged_detector import load_packaged_detector
from edge.faces.planarity import tracked_pair
from edge.runtime.boards import load_board
from edge.sources import open_source

COMMAND = "python -m benchmarks.held_photos"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--video", required=True, help="a video (or any frame source) with faces")
    parser.add_argument("--spreads", type=_spreads, default=(0.05, 0.1, 0.15, 0.2),
                        help="comma-separated shares of the frame each corner may move by (default: 0.05,0.1,0.15,0.2)")
    parser.add_argument("--step", type=count, default=1, help="hold every STEP-th frame (default: 1)")
    parser.add_argument("--min_face", type=count, default=40, help="smallest face width, px (default: 40)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        return interruptible(COMMAND, lambda: measure(args))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _spreads(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: must be comma-separated numbers, e.g. 0.1,0.2") from None
    if not all(0 < value < 0.5 for value in values):
        raise argparse.ArgumentTypeError(f"{text!r}: each spread is a share of the frame above 0 and below 0.5")
    return values


def measure(args) -> int:
    with open_source(args.video) as source:
        frames = [frame.image for index, frame in enumerate(source) if index % args.step == 0]
    detector = load_packaged_detector()
    threshold = load_board("host").liveness.planar_parallax
    print(f"{args.video}: {len(frames)} frames held as photos; host's planar_parallax {threshold}")
    for spread in args.spreads:
        pairs = held_pairs(frames, spread, detector, args.min_face, np.random.default_rng(args.seed))
        if not pairs:
            raise UserError(f"no face of {args.min_face} px or more found in {args.video}'s frames held as photos")
        once, confirmed = (np.array(values) for values in zip(*pairs))
        print(f"corners moved by up to {spread:g} of the frame: {len(pairs)} pairs; parallax measured once "
              f"{_spread_of(once)}; confirmed {_spread_of(confirmed)}; at or above the threshold: "
              f"{int((once >= threshold).sum())} once, {int((confirmed >= threshold).sum())} confirmed")
    return 0


def held_pairs(frames: list[np.ndarray], spread: float, detector, min_face: int,
               rng: np.random.Generator) -> list[tuple[float, float]]:
    """(parallax measured once, confirmed) of each face found in each frame held as a photo at two tilts."""
    pairs = []
    for frame in progress_bar(frames, desc=f"held photos, spread {spread:g}", unit="frame", leave=False):
        first, second = (_held(frame, spread, rng) for _ in range(2))
        for face in detector.detect(first):
            if face.box[2] - face.box[0] < min_face:
                continue
            once, confirmed = (tracked_pair(first, second, face.box, confirm_at) for confirm_at in (None, 0.0))
            if once is not None and confirmed is not None:
                pairs.append((once.parallax, confirmed.parallax))
    return pairs


def _held(frame: np.ndarray, spread: float, rng: np.random.Generator) -> np.ndarray:
    """The frame as a photo seen at a tilt: each of its corners moved by up to ``spread`` of the frame's size."""
    height, width = frame.shape[:2]
    corners = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    moved = (corners + rng.uniform(-spread, spread, (4, 2)) * [width, height]).astype(np.float32)
    return cv2.warpPerspective(frame, cv2.getPerspectiveTransform(corners, moved), (width, height))


def _spread_of(values: np.ndarray) -> str:
    p95, p99 = np.percentile(values, [95, 99])
    return f"p95 {p95:.4f}, p99 {p99:.4f}, largest {values.max():.4f}"


if __name__ == "__main__":
    raise SystemExit(main())
