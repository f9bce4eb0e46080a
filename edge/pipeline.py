"""The kiosk pipeline: detect -> align -> embed -> match, with per-stage timings.

Everything comes from the bundle: model files, their preprocessing, the verifier's calibrated threshold; the
board config (named in the manifest) gives the backend preference, threads and default precision.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.align import align_face
from edge.backends import BACKEND_FORMATS
from edge.boards import load_board
from edge.dataprep import largest
from edge.detect import BlazeFaceDetector, Detection
from edge.errors import UserError
from edge.gallery import Gallery, GalleryTemplates
from edge.manifest import Manifest, ModelEntry, read_manifest
from edge.runtime import LoadedModel, load_model

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


def choose_entry(manifest: Manifest, task: str, preference: tuple[str, ...], precision: str | None,
                 backend: str | None) -> ModelEntry:
    """The entry for ``task`` at ``precision`` that the preferred (or given) backend can run.

    Without an explicit precision, the board's default is used when the backend has it, else fp32.
    """
    candidates = manifest.for_task(task)
    if not candidates:
        raise UserError(f"the bundle has no {task} model; recompile it with python -m compile")
    backends = (backend,) if backend else preference
    for name in backends:
        formats = BACKEND_FORMATS.get(name, ())
        runnable = [e for e in candidates if e.format in formats and precision in (None, e.precision)]
        if runnable:
            return runnable[0]
    have = ", ".join(f"{e.format}/{e.precision}" for e in candidates)
    raise UserError(f"no {task} model in the bundle for backend {backend or list(preference)} "
                    f"at precision {precision or 'any'}; the bundle has {have}")


class Pipeline:
    def __init__(self, detector: BlazeFaceDetector, embedder: LoadedModel, threshold: float,
                 gallery: Gallery | None = None, board: str = "", threads: int = 0):
        self.detector = detector
        self.embedder = embedder
        self.threshold = threshold
        self.gallery = gallery
        self.board = board          # the bundle's board and the thread count its models were loaded with,
        self.threads = threads      # recorded so callers (benchmarks) need not re-read manifest and config
        self.fingerprint = embedder.entry.sha256
        self.templates = gallery.templates(self.fingerprint) if gallery else GalleryTemplates([], np.zeros((0, 0)), 0)

    @classmethod
    def from_bundle(cls, bundle_dir: str | Path, gallery_path: str | Path | None = None, backend: str | None = None,
                    threads: int | None = None, precision: str | None = None,
                    threshold: float | None = None) -> "Pipeline":
        manifest = read_manifest(bundle_dir)
        board = load_board(manifest.board)
        threads = threads or board.threads
        preference = board.backends
        verify_precision = precision or _default_precision(manifest, board.precision.get("verify"), backend,
                                                           preference)
        detect_entry = choose_entry(manifest, "detect", preference, None, None)
        verify_entry = choose_entry(manifest, "verify", preference, verify_precision, backend)
        detector = BlazeFaceDetector(load_model(bundle_dir, detect_entry, threads, preference=preference))
        embedder = load_model(bundle_dir, verify_entry, threads, backend=backend, preference=preference)
        if threshold is None:
            threshold = verify_entry.threshold
        if threshold is None:
            raise UserError(f"model {verify_entry.name} has no calibrated threshold; pass --threshold")
        gallery = Gallery(gallery_path) if gallery_path else None
        return cls(detector, embedder, threshold, gallery, board=board.name, threads=threads)

    def describe(self) -> dict:
        return {"detector": self.detector.model.entry.name, "detector_backend": self.detector.model.backend_name,
                "verifier": self.embedder.entry.name, "verifier_backend": self.embedder.backend_name,
                "threshold": self.threshold, "enrolled": len(self.templates.names)}

    def embed_aligned(self, faces: list[np.ndarray]) -> np.ndarray:
        """Aligned 112x112 BGR crops -> L2-normalised embeddings (N, D), one face per call (batch 1 models)."""
        rows = [self.embedder.run_images([face])[0][0] for face in faces]
        embeddings = np.asarray(rows, np.float32)
        return embeddings / (np.linalg.norm(embeddings, axis=1, keepdims=True) + 1e-12)

    def embed_image(self, image: np.ndarray) -> np.ndarray | None:
        """The normalised embedding of the largest face in ``image``, or None if no face is found."""
        face = largest(self.detector.detect(image))
        if face is None:
            return None
        return self.embed_aligned([align_face(image, face.keypoints)])[0]

    def match(self, embedding: np.ndarray) -> tuple[str | None, float, str | None]:
        if not self.templates.names:
            return None, -1.0, None
        similarities = self.templates.matrix @ embedding
        best = int(np.argmax(similarities))
        score = float(similarities[best])
        name = self.templates.names[best]
        return (name if score >= self.threshold else None), score, name

    def process(self, image: np.ndarray) -> FrameResult:
        timings = dict.fromkeys(STAGES, 0.0)
        start = time.perf_counter()
        detections: list[Detection] = self.detector.detect(image)
        timings["detect"] = _ms_since(start)
        decisions = []
        for det in detections:
            t = time.perf_counter()
            aligned = align_face(image, det.keypoints)
            timings["align"] += _ms_since(t)
            t = time.perf_counter()
            embedding = self.embed_aligned([aligned])[0]
            timings["embed"] += _ms_since(t)
            t = time.perf_counter()
            identity, score, best = self.match(embedding)
            timings["match"] += _ms_since(t)
            decisions.append(Decision([round(float(v), 1) for v in det.box], round(det.score, 4), identity,
                                      round(score, 4), best, np.round(det.keypoints[:4], 1).tolist()))
        timings["total"] = _ms_since(start)
        return FrameResult(decisions, timings)

    def close(self) -> None:
        self.detector.model.close()
        self.embedder.close()
        if self.gallery:
            self.gallery.close()


def _default_precision(manifest: Manifest, board_default: str | None, backend: str | None,
                       preference: tuple[str, ...]) -> str | None:
    """The board's default verify precision if the chosen backend has it in the bundle, else fp32."""
    formats = BACKEND_FORMATS.get(backend, ()) if backend else None
    for entry in manifest.for_task("verify"):
        if entry.precision == board_default and (formats is None or entry.format in formats):
            return board_default
    return "fp32" if any(e.precision == "fp32" for e in manifest.for_task("verify")) else None


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
