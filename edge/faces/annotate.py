"""Drawing tracked faces and their visits' decisions on frames, and writing them to a video file."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge.base.errors import UserError
from edge.base.interrupts import make_folder, refuse_existing

KNOWN = (60, 200, 60)      # BGR green
UNKNOWN = (40, 40, 220)    # BGR red
PENDING = (200, 160, 40)   # BGR blue: a visit still gathering evidence, or undecided


def draw_tracks(image: np.ndarray, tracks, judge, scale: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Each tracked face with its track id and its visit's decision so far (``edge.kiosk.visits.VisitJudge``).

    ``scale`` (x, y) maps the detection image's pixels onto ``image`` when that is a larger view of the same
    instant (picamera2's main stream beside the low-resolution one the detector ran on)."""
    canvas = image.copy()
    sx, sy = scale
    for track in tracks:
        visit = judge.visits.get(track.id)
        decision = visit.decision if visit else None
        if decision is None:
            looks = len(visit.embeddings) if visit else 0
            colour, label = PENDING, f"#{track.id} looking ({looks})"
        else:
            colour = {"named": KNOWN, "unknown": UNKNOWN}.get(decision.outcome, PENDING)
            label = f"#{track.id} {decision.identity or decision.outcome} {decision.score:.2f}"
        x1, y1, x2, y2 = (int(round(v * f)) for v, f in zip(track.shown_box(), (sx, sy, sx, sy)))
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, 2)
        for x, y in track.detection.keypoints[:4] if track.detection is not None else ():     # none while resting
            cv2.circle(canvas, (int(x * sx), int(y * sy)), 2, (255, 255, 0), -1)
        (w, h), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        cv2.rectangle(canvas, (x1, max(0, y1 - h - 6)), (x1 + w + 4, y1), colour, -1)
        cv2.putText(canvas, label, (x1 + 2, y1 - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


class VideoWriter:
    """Opens lazily on the first frame, so the size comes from the source; an existing file is refused at once, not
    written over."""

    def __init__(self, path: str | Path, fps: float = 30.0):
        self.path = refuse_existing(path, "file", "--output")
        self.fps = fps
        self._writer = None

    def write(self, image: np.ndarray) -> None:
        if self._writer is None:
            make_folder(self.path.parent)
            height, width = image.shape[:2]
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height))
            if not self._writer.isOpened():
                raise UserError(f"OpenCV cannot write video {self.path} (use a .mp4 or .avi name)")
        self._writer.write(image)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
