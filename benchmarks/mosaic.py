"""A large-frame test video made from a small one: ``cols x rows`` copies side by side, each started at its
own point of the clip (looping), so one frame holds several people at the small clip's face sizes.

The 640x360 stage clip tiled 3x3 gives 1920x1080 frames with nine faces of roughly 40-80 px, far from the
camera as a kiosk or door camera sees people across a room; tiled 2x2 and resized to 1920x1080 (``size``), about
five faces of 60-160 px, as a street or hall camera sees passers-by. Keeping one frame in ``every`` (written at
the rate that leaves) shows the clip as a slower camera, or a kiosk that keeps up with one frame in that many, sees
it; a 1x1 grid with a ``size`` is the clip alone at another size.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.base.errors import UserError
from edge.base.interrupts import complete_or_absent
from edge.base.paths import refuse_output_over_input
from edge.base.progress import progress_bar


@dataclass(frozen=True)
class MosaicOptions:
    source: Path
    out: Path
    cols: int = 3
    rows: int = 3
    frames: int = 0           # 0: as many as the source has
    size: tuple[int, int] | None = None    # (width, height) the tiled frames are resized to; None: as tiled
    every: int = 1            # keep one source frame in this many, written at the source's rate over it


def read_all_frames(path: Path) -> tuple[list[np.ndarray], float]:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise UserError(f"cannot open video {path}")
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    if not frames:
        raise UserError(f"video {path} has no readable frames")
    return frames, fps


def make_mosaic(options: MosaicOptions) -> tuple[int, tuple[int, int], float]:
    """Writes the mosaic video; returns (frames written, (width, height), frames per second)."""
    if options.cols < 1 or options.rows < 1:
        raise UserError(f"--grid needs at least one column and one row, got {options.cols}x{options.rows}")
    if options.every < 1:
        raise UserError(f"--every must be 1 (every frame) or more, got {options.every}")
    refuse_output_over_input(options.out, [options.source])
    frames, fps = read_all_frames(options.source)
    frames, fps = frames[::options.every], fps / options.every
    cells = options.cols * options.rows
    height, width = frames[0].shape[:2]
    size = options.size or (width * options.cols, height * options.rows)
    count = options.frames or len(frames)
    starts = [cell * len(frames) // cells for cell in range(cells)]
    with complete_or_absent(options.out) as partial:          # the whole video or none: never a partial mp4
        writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not writer.isOpened():
            raise UserError(f"OpenCV cannot write video {options.out} (use a .mp4 or .avi name)")
        try:
            for index in progress_bar(range(count), desc="mosaic", unit="frame"):
                tiles = [frames[(start + index) % len(frames)] for start in starts]
                rows = [np.hstack(tiles[r * options.cols:(r + 1) * options.cols]) for r in range(options.rows)]
                tiled = np.vstack(rows)
                same = tiled.shape[1::-1] == size
                writer.write(tiled if same else cv2.resize(tiled, size, interpolation=cv2.INTER_LINEAR))
        finally:
            writer.release()
    return count, size, fps


def parse_grid(text: str, flag: str = "--grid") -> tuple[int, int]:
    """``COLSxROWS`` (or ``WxH``) as two positive numbers; anything else is one line naming ``flag``."""
    cols, sep, rows = text.lower().partition("x")
    if not sep or not cols.isdigit() or not rows.isdigit() or not int(cols) or not int(rows):
        example = "3x3" if flag == "--grid" else "1920x1080"
        raise UserError(f"{flag} {text!r}: write two positive numbers as AxB, e.g. {example}")
    return int(cols), int(rows)
