"""The whole kiosk pipeline on a frame source: throughput, frame times, faces found and decisions, with the
board's tracking and without it, side by side in one run.

Each frame is read once (the read is timed and charged to every mode, as a camera would be) and handed to each
mode in turn, alternating which goes first, so machine noise falls on both alike:

- ``tracked``: the board's detection strategy, the tracker, the liveness checks the kiosk would run for the bundle
  (``edge.liveness.choose``) and one decision per visit (``edge.kiosk.stream``): the kiosk as ``edge run`` runs it;
- ``per_frame``: the whole frame detected and every face embedded and matched in every frame
  (``Pipeline.process``), as the kiosk ran before it tracked;
- ``anonymise``: every detected face replaced by the bundle's generator and blended back, failing closed
  (``edge.generation.anonymise``, what ``python -m edge generate --mode anonymise`` runs).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.environment import collect_environment
from benchmarks.pipeline_compare import (
    DlibFaceFrames,
    FacesByFrame,
    face_recall,
    visit_agreement,
)
from benchmarks.results import new_result
from benchmarks.timing import summarize
from edge.base.errors import UserError
from edge.base.progress import progress_bar
from edge.base.timing import elapsed_ms
from edge.faces.pipeline import Pipeline, open_pipeline
from edge.kiosk.stream import KioskStream
from edge.liveness.choose import open_liveness
from edge.liveness.gate import LivenessGate
from edge.runtime.board_profile import bundle_profile
from edge.runtime.machine import pi_throttled, soc_temperature
from edge.sources import open_source

MODES = ("tracked", "per_frame", "anonymise")
KIOSK_MODES = ("tracked", "per_frame")


@dataclass(frozen=True)
class PipelineOptions:
    bundle: Path
    source: str
    frames: int = 300            # a cap, so a live camera stops; a shorter file stops at its end
    warmup: int = 5              # first frames processed but not counted: they pay for lazy allocations
    gallery: Path | None = None
    backend: str | None = None
    threads: int | None = None
    modes: tuple[str, ...] = MODES
    reference: str | None = None  # "dlib": also find faces with dlib's HOG detector, on every reference_every-th frame
    reference_every: int = 5
    generator: str | None = None  # anonymise: the bundle's generator role (default: a face swap, then a decoder)
    liveness: str | None = None   # tracked: the checks replacing the kiosk's (edge run --liveness; "none": without)


class _Mode:
    """One way of running the kiosk over the frames, with what it found and how long it took."""

    def __init__(self, name: str, pipeline: Pipeline, liveness: LivenessGate | None = None):
        self.name = name
        self.pipeline = pipeline
        self.liveness = liveness
        self.stream = KioskStream(pipeline, liveness=liveness) if name == "tracked" else None
        self.frame_ms: list[float] = []
        self.stage_ms: dict[str, list[float]] = {}
        self.faces = FacesByFrame()
        self.decisions: list = []
        self.embedded = 0

    def run(self, image: np.ndarray, index: int, time_s: float, counted: bool, read_ms: float) -> None:
        start = time.perf_counter_ns()
        if self.stream is not None:
            step = self.stream.step(image, index, time_s)
            self.decisions += step.decisions
            self.embedded += step.embedded
            boxes = [(t.shown_box(), t.id) for t in step.faces]
            timings = step.timings_ms
        else:
            result = self.pipeline.process(image)
            self.decisions += [(index, d) for d in result.decisions]
            boxes = [(np.asarray(d.box), None) for d in result.decisions]
            timings = result.timings_ms
        spent = elapsed_ms(start)
        if counted:
            self.frame_ms.append(read_ms + spent)
            self.faces.add(index, boxes)
            for stage, value in {"read": read_ms, **timings}.items():
                self.stage_ms.setdefault(stage, []).append(value)

    def finish(self) -> None:
        if self.stream is not None:
            self.decisions += self.stream.finish()
        if self.liveness is not None:
            self.liveness.close()

    def summary(self) -> dict:
        frames = len(self.frame_ms)
        wall_s = sum(self.frame_ms) / 1000.0
        record = {"frames": frames, "fps": frames / wall_s if wall_s else None,
                  "frame_summary": summarize(self.frame_ms),
                  "frames_with_face": self.faces.frames_with_face(), "faces_per_frame": self.faces.mean_faces(),
                  "stages": {s: summarize(v) for s, v in self.stage_ms.items()}}
        if self.stream is not None:
            outcomes = [d.outcome for d in self.decisions]
            record.update(visits=len(self.decisions), describe=self.stream.describe(),
                          decisions={o: outcomes.count(o) for o in ("named", "unknown", "undecided")},
                          embedded_faces=self.embedded)
        else:
            record.update(decisions={"faces_decided": len(self.decisions),
                                     "named": sum(d.identity is not None for _, d in self.decisions)})
        return record


class _AnonymiseMode:
    """Anonymising the frames (edge.generation.anonymise), timed like the kiosk's modes."""

    name = "anonymise"

    def __init__(self, bundle: Path, backend: str | None, threads: int | None, role: str | None = None):
        from edge.faces.scan import load_detectors
        from edge.generation.anonymise import Anonymiser
        from edge.generation.generate import open_generator
        from edge.runtime.backends.base import BackendOptions
        from edge.runtime.board_profile import board_with_profile
        from edge.runtime.manifest import read_manifest

        manifest = read_manifest(bundle)
        self.board, profile = board_with_profile(manifest.board)
        self.threads = threads or self.board.threads
        self.generator, self.choice = open_generator(bundle, manifest, self.board, "anonymise", role,
                                                     backend=backend, threads=self.threads, profile=profile)
        self.detectors = load_detectors(bundle, manifest, self.board, BackendOptions(threads=self.threads),
                                        profile=profile)
        self.anonymiser = Anonymiser(self.detectors, self.generator, self.board.detection, self.board.tracking)
        self.frame_ms: list[float] = []
        self.stage_ms: dict[str, list[float]] = {}
        self.replaced = self.pixelated = self.with_face = 0
        from edge.faces.packaged_detector import load_packaged_detector

        self.witness = load_packaged_detector()   # an independent look at each input frame, outside the timing
        self.checked = self.unaltered = 0

    def run(self, image: np.ndarray, index: int, time_s: float, counted: bool, read_ms: float) -> None:
        start = time.perf_counter_ns()
        step = self.anonymiser.step(image, index, time_s)
        spent = elapsed_ms(start)
        if counted:
            self.frame_ms.append(read_ms + spent)
            self.replaced += step.replaced
            self.pixelated += step.pixelated
            self.with_face += step.replaced > 0
            for stage, value in {"read": read_ms, **step.timings_ms}.items():
                self.stage_ms.setdefault(stage, []).append(value)
            for face in self.witness.detect(image):
                self.checked += 1
                self.unaltered += not altered(image, step.image, face.box)

    def finish(self) -> None:
        self.generator.close()
        for detector in self.detectors.values():
            detector.model.close()

    def summary(self) -> dict:
        frames = len(self.frame_ms)
        wall_s = sum(self.frame_ms) / 1000.0
        return {"frames": frames, "fps": frames / wall_s if wall_s else None,
                "frame_summary": summarize(self.frame_ms), "generator": self.choice,
                "frames_with_face": self.with_face, "faces_per_frame": self.replaced / frames if frames else 0.0,
                # the table's decisions column: what was done to the faces
                "decisions": {"replaced": self.replaced, "pixelated": self.pixelated},
                "witness_faces": self.checked, "witness_faces_unaltered": self.unaltered,
                "stages": {s: summarize(v) for s, v in self.stage_ms.items()}}


THERMAL_EVERY = 30        # frames between two readings of the SoC temperature


class ThermalLog:
    """The SoC's temperature through a run (where the board exposes thermal zones) and a Pi's throttling flags at
    its end: a board that heats up and slows down shows it beside its frame times."""

    def __init__(self):
        self.readings: list[float] = []

    def sample(self) -> None:
        reading = soc_temperature()
        if reading is not None:
            self.readings.append(reading)

    def summary(self) -> dict:
        self.sample()
        return {"readings_c": self.readings, "max_c": max(self.readings) if self.readings else None,
                "throttled_at_end": pi_throttled()}


UNALTERED_LEVEL = 8.0     # mean absolute change (0-255) of a face's inner half below which it counts as shown


def altered(before: np.ndarray, after: np.ndarray, box: np.ndarray) -> bool:
    """Whether the inner half of ``box`` (what the anonymiser's oval covers in any pose) changed visibly."""
    x1, y1, x2, y2 = box
    inner = np.array([x1 + (x2 - x1) / 4, y1 + (y2 - y1) / 4, x2 - (x2 - x1) / 4, y2 - (y2 - y1) / 4])
    x1, y1, x2, y2 = np.clip(inner, 0, [before.shape[1], before.shape[0]] * 2).astype(int)
    if x2 <= x1 or y2 <= y1:
        return True
    return float(np.abs(before[y1:y2, x1:x2].astype(np.int16) - after[y1:y2, x1:x2]).mean()) >= UNALTERED_LEVEL


def _liveness(options: PipelineOptions) -> LivenessGate | None:
    return open_liveness(options.bundle, options.liveness, threads=options.threads,
                         profile=bundle_profile(options.bundle))


def run_pipeline(options: PipelineOptions) -> tuple[str, dict]:
    unknown = [m for m in options.modes if m not in MODES]
    if unknown or not options.modes:
        raise UserError(f"--modes {','.join(options.modes)}: choose from {', '.join(MODES)}")
    pipe = None
    if any(m in KIOSK_MODES for m in options.modes):
        pipe = open_pipeline(options.bundle, gallery_path=options.gallery, backend=options.backend,
                                    threads=options.threads, profile=bundle_profile(options.bundle))
        pipe.matcher.require_current(options.bundle)  # timing a match against part of the gallery would flatter it
    modes = [_Mode(name, pipe, _liveness(options) if name == "tracked" else None) if name in KIOSK_MODES
             else _AnonymiseMode(options.bundle, options.backend, options.threads, options.generator)
             for name in options.modes]
    reference = DlibFaceFrames() if options.reference == "dlib" else None
    thermal = ThermalLog()
    read = 0
    try:
        with open_source(options.source) as source:
            frames = iter(source)
            progress = progress_bar(total=options.frames + options.warmup, desc="pipeline", unit="frame")
            while read < options.frames + options.warmup:
                start = time.perf_counter_ns()
                frame = next(frames, None)
                if frame is None:
                    break
                read_ms = elapsed_ms(start)
                counted = read >= options.warmup
                order = modes if read % 2 == 0 else modes[::-1]
                for mode in order:
                    mode.run(frame.image, frame.index, frame.time_s, counted, read_ms)
                if reference is not None and counted and (read - options.warmup) % options.reference_every == 0:
                    reference.add(frame.index, frame.image)
                if read % THERMAL_EVERY == 0:
                    thermal.sample()
                read += 1
                progress.update()
            progress.close()
        for mode in modes:
            mode.finish()
        described = pipe.describe() if pipe else {"anonymise": modes[0].choice}
    finally:
        if pipe:
            pipe.close()
    if read <= options.warmup:
        raise UserError(f"source {options.source} gave {read} frames, not more than the {options.warmup} warm-up "
                        f"frames; lower --warmup or use a longer source")
    runs = {mode.name: mode.summary() for mode in modes}
    comparison = {}
    if "tracked" in runs and "per_frame" in runs:
        tracked, per_frame = runs["tracked"], runs["per_frame"]
        comparison["fps_ratio_tracked_over_per_frame"] = tracked["fps"] / per_frame["fps"]
        by_name = {m.name: m for m in modes}
        comparison["visit_agreement"] = visit_agreement(by_name["tracked"].decisions, by_name["tracked"].faces,
                                                        by_name["per_frame"].decisions)
    if reference is not None:
        comparison["dlib"] = {mode.name: face_recall(reference, mode.faces) for mode in modes}
        comparison["dlib"]["reference"] = reference.describe()
    headline = runs[options.modes[0]]
    board, threads = (pipe.board, pipe.threads) if pipe else (modes[0].board.name, modes[0].threads)
    result = new_result(
        "pipeline", collect_environment(board, threads, options.bundle), bundle=str(options.bundle),
        source=options.source,
        gallery=str(options.gallery) if options.gallery else None, pipeline=described, modes=runs,
        comparison=comparison, frames=headline["frames"], warmup_frames=options.warmup, fps=headline["fps"],
        thermal=thermal.summary())
    return board, result
