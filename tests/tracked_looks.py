"""A video's faces handed to a liveness gate as the kiosk hands them (for the liveness tests on real video)."""
from __future__ import annotations

from edge.faces.tracking import IouTracker
from edge.liveness.checks import Look
from edge.sources import open_source


def give_looks(gate, detector, tracking, source: str) -> None:
    """Each tracked face of ``source`` is its own visit, as in the kiosk, and gets a look whenever its visit wants
    one, from ``detector`` (the packaged one) and a tracker with the board's ``tracking`` settings."""
    tracker = IouTracker(tracking)
    with open_source(source) as frames:
        for frame in frames:
            for track in tracker.update(detector.detect(frame.image), frame.index, frame.time_s).live:
                if track.confirmed and track.detection is not None and gate.wants_look(track.id, frame.index):
                    gate.look(track.id, Look(frame.image, track.detection, frame.time_s, frame.index))
