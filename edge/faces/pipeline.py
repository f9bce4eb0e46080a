"""The kiosk pipeline: detect -> align -> embed -> match, with per-stage timings.

Everything comes from the bundle: model files, their preprocessing, the verifier's calibrated threshold; the
board config (named in the manifest) gives the backend preference, threads and default precision. The pipeline
composes its parts: seeing faces (``edge.faces.reader.FaceReader``), matching them against the gallery with the
threshold policy and logging decisions (``edge.faces.matcher.Matcher``); ``open_pipeline`` loads it from a bundle.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.faces.detect import Detection
from edge.faces.matcher import Matcher
from edge.faces.reader import FaceReader
from edge.faces.scan import load_detectors
from edge.faces.score_norm import bundle_score_norm
from edge.gallery.sqlite import SqliteGallery
from edge.runtime.backends.base import BackendOptions
from edge.runtime.board_profile import BoardProfile
from edge.runtime.boards import BoardConfig, load_board
from edge.runtime.crops import crop_template
from edge.runtime.manifest import read_manifest
from edge.runtime.models import choose_model, load_model

STAGES = ("detect", "align", "embed", "match", "total")


@dataclass
class Decision:
    box: list[float]
    detector_score: float
    identity: str | None         # None: unknown (no template above the threshold)
    score: float                 # cosine similarity to the best template (-1 when the gallery is empty)
    best_match: str | None       # the closest identity even when below the threshold
    keypoints: list[list[float]] = field(default_factory=list)


@dataclass
class FrameResult:
    decisions: list[Decision]
    timings_ms: dict[str, float]


class Pipeline:
    def __init__(self, faces: FaceReader, matcher: Matcher, board: str = "", threads: int = 0,
                 verifier_choice: str = "", streaming: BoardConfig | None = None):
        self.faces = faces
        self.matcher = matcher
        self.gallery = matcher.gallery
        self.streaming = streaming      # the board config whose detection and tracking settings edge.kiosk.stream uses
        self.verifier_choice = verifier_choice   # why this file and backend run (edge.runtime.models.Choice.reason)
        self.board = board          # the bundle's board and the thread count its models were loaded with,
        self.threads = threads      # recorded so callers (benchmarks) need not re-read manifest and config

    def describe(self) -> dict:
        faces, matcher = self.faces, self.matcher
        return {"detector": faces.detector.model.entry.name, "detector_backend": faces.detector.model.backend_name,
                "verifier": faces.embedder.entry.name, "verifier_backend": faces.embedder.backend_name,
                "verifier_choice": self.verifier_choice, "crop": faces.aligner.template.name,
                "mirror_average": faces.mirror_average,
                "threshold": round(matcher.threshold, 4), "enrolled": len(matcher.templates.names)}

    def process(self, image: np.ndarray) -> FrameResult:
        timings = dict.fromkeys(STAGES, 0.0)
        start = time.perf_counter()
        detections: list[Detection] = self.faces.detector.detect(image)
        timings["detect"] = ms_since(start)
        decisions = []
        for det in detections:
            t = time.perf_counter()
            aligned = self.faces.align(image, det)
            timings["align"] += ms_since(t)
            t = time.perf_counter()
            embedding = self.faces.embed_aligned([aligned])[0]
            timings["embed"] += ms_since(t)
            t = time.perf_counter()
            identity, score, best = self.matcher.match(embedding)
            timings["match"] += ms_since(t)
            decisions.append(Decision([round(float(v), 1) for v in det.box], round(det.score, 4), identity,
                                      round(score, 4), best, np.round(det.keypoints[:4], 1).tolist()))
        timings["total"] = ms_since(start)
        return FrameResult(decisions, timings)

    def close(self) -> None:
        self.faces.close()
        if self.gallery:
            self.gallery.close()


def open_pipeline(bundle_dir: str | Path, gallery_path: str | Path | None = None, backend: str | None = None,
                  threads: int | None = None, precision: str | None = None, threshold: float | None = None,
                  per_probe_far: float | None = None, create_gallery: bool = False,
                  profile: BoardProfile | None = None) -> Pipeline:
    """The bundle's pipeline. ``profile``: the board's measured profile (edge.runtime.board_profile), which the commands
    that run on the board read and pass; without one the board config's facts choose."""
    manifest = read_manifest(bundle_dir)
    board = load_board(manifest.board)
    # a wrong path fails first, before any model loads
    gallery = SqliteGallery(gallery_path, create=create_gallery) if gallery_path else None
    options = BackendOptions(threads=threads or board.threads)
    verify = choose_model(manifest, board, "verify", backend, precision, profile=profile)
    crop_template(verify.entry.input.crop)             # refuse an unknown crop before loading anything
    detectors = load_detectors(bundle_dir, manifest, board, options, profile=profile)
    embedder = load_model(bundle_dir, verify.entry, verify.backend, options)
    faces = FaceReader(detectors[board.detection.detector], embedder, detectors)
    matcher = Matcher(embedder.entry, faces.key, gallery, threshold, per_probe_far,
                      bundle_score_norm(Path(bundle_dir), embedder.entry))
    return Pipeline(faces, matcher, board=board.name,
                    threads=options.threads, verifier_choice=verify.reason, streaming=board)


def ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
