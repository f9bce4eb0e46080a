"""What ``edge run`` adds to the kiosk's one loop (``edge.kiosk.service``): a JSON line per decision with the run's
summary, and the annotated video."""
from __future__ import annotations

import json
import sys
import time

from edge.faces.annotate import VideoWriter, draw_tracks
from edge.kiosk.run_summary import VisitSummary
from edge.kiosk.service import Sink


class DecisionLines(Sink):
    """Prints each decision as one JSON line (with who the source says it was, when it knows), and counts the run
    for its closing summary line."""

    def __init__(self, enrolled: set[str], out=None):
        self.summary = VisitSummary(enrolled)
        self.out = out                      # None: whatever sys.stdout is when a line is printed
        self.started = time.perf_counter()

    def frame(self, frame, step) -> None:
        self.summary.add_frame(frame.truth, step.faces)

    def decisions(self, decisions) -> None:
        for decision in decisions:
            record = decision.record()
            truth = self.summary.truth_of(decision.track)
            if truth is not False:
                record["truth"] = truth
            print(json.dumps(record), file=self.out or sys.stdout, flush=True)
        self.summary.add_decisions(decisions)

    def text(self) -> str:
        return self.summary.text(time.perf_counter() - self.started)


class AnnotatedVideo(Sink):
    """Each frame with its tracked faces drawn as the page draws them, written to a video file."""

    def __init__(self, path, judge):
        self.writer, self.judge = VideoWriter(path), judge

    def frame(self, frame, step) -> None:
        self.writer.write(draw_tracks(frame.image, step.faces, self.judge))

    def close(self) -> None:
        self.writer.close()
