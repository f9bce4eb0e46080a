"""The kiosk pipeline: detect -> align -> embed -> match, with per-stage timings.

Everything comes from the bundle: model files, their preprocessing, the verifier's calibrated threshold; the
board config (named in the manifest) gives the backend preference, threads and default precision.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.align import Aligner, crop_template, pick_face
from edge.backends.base import BackendOptions
from edge.board_profile import BoardProfile
from edge.boards import BoardConfig, load_board
from edge.dataprep import enrolment_face
from edge.detect import BlazeFaceDetector, Detection
from edge.errors import UserError
from edge.gallery.sqlite import SqliteGallery
from edge.gallery.store import EmbeddingKey, Gallery, GalleryTemplates
from edge.manifest import read_manifest
from edge.matching import MatchThreshold, match_threshold
from edge.runtime import LoadedModel, choose_model, load_model
from edge.scan import load_detectors
from edge.visits import Thresholds

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
    def __init__(self, detector: BlazeFaceDetector, embedder: LoadedModel, threshold: float | None = None,
                 gallery: Gallery | None = None, board: str = "", threads: int = 0, per_probe_far: float | None = None,
                 verifier_choice: str = "", detectors: dict | None = None, streaming: BoardConfig | None = None):
        self.detector = detector                 # whole frames and photos
        self.detectors = detectors or {detector.model.entry.architecture: detector}   # all the bundle's, by name
        self.embedder = embedder
        entry = embedder.entry
        self.aligner = Aligner(entry.input.crop, detector.keypoint_names)   # refused here, before any frame
        if any(d.keypoint_names != detector.keypoint_names for d in self.detectors.values()):
            raise UserError("the bundle's detectors name their key points differently; align needs one order")
        self.streaming = streaming      # the board config whose detection and tracking settings edge.stream uses
        self.mirror_average = entry.images_per_face == 2
        self.gallery = gallery
        self.verifier_choice = verifier_choice   # why this file and backend run (edge.runtime.Choice.reason)
        self.board = board          # the bundle's board and the thread count its models were loaded with,
        self.threads = threads      # recorded so callers (benchmarks) need not re-read manifest and config
        self.key = EmbeddingKey(entry.sha256, entry.embedding_space, entry.kind, entry.compatible_with)
        self._threshold_request = (threshold, per_probe_far)
        self.reload_gallery()

    def reload_gallery(self) -> None:
        """Reads the templates again, and the open-set threshold for the gallery's new size."""
        self.templates = (self.gallery.people.templates(self.key) if self.gallery
                          else GalleryTemplates([], np.zeros((0, 0)), 0))
        self.match_threshold = self._threshold(*self._threshold_request)
        self.threshold = self.match_threshold.threshold

    @property
    def fingerprint(self) -> str:
        """The sha256 of the embedding file, recorded with every logged decision."""
        return self.key.fingerprint

    def _threshold(self, explicit: float | None, per_probe_far: float | None) -> MatchThreshold:
        """The user's threshold, else the open-set one for this gallery's size from the artifact's calibration."""
        entry = self.embedder.entry
        size = max(1, len(self.templates.names))
        if explicit is not None:
            return MatchThreshold.fixed(explicit, size, "--threshold")
        if entry.match is not None:
            return match_threshold(entry.match, size, per_probe_far)
        if entry.threshold is not None:
            return MatchThreshold.fixed(entry.threshold, size, "the checkpoint (no real-pair calibration)")
        raise UserError(f"model {entry.name} has no calibrated threshold; pass --threshold, or recompile with "
                        f"real pairs (python -m compile ... --pairs_images DIR)")

    def visit_thresholds(self, unknown_far: float) -> Thresholds:
        """The match threshold and, below it, the one at the looser per-probe rate ``unknown_far`` under which a
        visitor is a stranger (one threshold for both when no real-pair calibration gives the lower one); and the
        1:1 threshold at which two looks are one person."""
        entry = self.embedder.entry
        if entry.match is None or self.match_threshold.origin != "real-pair calibration":
            return Thresholds(self.threshold, self.threshold, self.threshold)
        lower = match_threshold(entry.match, self.match_threshold.gallery_size, unknown_far).threshold
        return Thresholds(self.threshold, min(lower, self.threshold), entry.match.threshold)

    @classmethod
    def from_bundle(cls, bundle_dir: str | Path, gallery_path: str | Path | None = None, backend: str | None = None,
                    threads: int | None = None, precision: str | None = None,
                    threshold: float | None = None, per_probe_far: float | None = None,
                    create_gallery: bool = False, profile: BoardProfile | None = None) -> "Pipeline":
        """``profile``: the board's measured profile (edge.board_profile), which the commands that run on the
        board read and pass; without one the board config's facts choose."""
        manifest = read_manifest(bundle_dir)
        board = load_board(manifest.board)
        # a wrong path fails first, before any model loads
        gallery = SqliteGallery(gallery_path, create=create_gallery) if gallery_path else None
        options = BackendOptions(threads=threads or board.threads)
        verify = choose_model(manifest, board, "verify", backend, precision, profile=profile)
        crop_template(verify.entry.input.crop)             # refuse an unknown crop before loading anything
        detectors = load_detectors(bundle_dir, manifest, board, options, profile=profile)
        embedder = load_model(bundle_dir, verify.entry, verify.backend, options)
        return cls(detectors[board.detection.detector], embedder, threshold, gallery, board=board.name,
                   threads=options.threads, per_probe_far=per_probe_far, verifier_choice=verify.reason,
                   detectors=detectors, streaming=board)

    def log_decisions(self, records: list[dict], source: str) -> None:
        """Logs decision records in the gallery (one transaction), with their source and this model's file."""
        if self.gallery and records:
            self.gallery.events.log([{**r, "source": source, "model_fingerprint": self.fingerprint}
                                     for r in records])

    def require_current_gallery(self, bundle: str | Path) -> None:
        """Refuses to run while enrolled people have templates only from a model whose embeddings differ."""
        stale = self.templates.stale
        if not stale:
            return
        name, sources = next(iter(sorted(stale.items())))
        photos = " ".join(sorted({str(Path(s).parent) for s in sources if s})) or "PHOTOS"
        raise UserError(f"{len(stale)} enrolled people ({', '.join(sorted(stale)[:5])}) were enrolled with a model "
                        f"whose embeddings this bundle's {self.embedder.entry.name} cannot compare; re-enrol each, "
                        f"e.g.: python -m edge enroll --bundle {bundle} --name {name} --consent --add {photos} "
                        f"(or remove them with python -m edge gallery --remove NAME)")

    def describe(self) -> dict:
        return {"detector": self.detector.model.entry.name, "detector_backend": self.detector.model.backend_name,
                "verifier": self.embedder.entry.name, "verifier_backend": self.embedder.backend_name,
                "verifier_choice": self.verifier_choice, "crop": self.aligner.template.name,
                "mirror_average": self.mirror_average,
                "threshold": round(self.threshold, 4), "enrolled": len(self.templates.names)}

    def embed_aligned(self, faces: list[np.ndarray]) -> np.ndarray:
        """Aligned BGR crops -> L2-normalised embeddings (N, D), as ``embed_faces`` computes them."""
        return embed_faces(self.embedder, faces, self.mirror_average)

    def align(self, image: np.ndarray, detection: Detection) -> np.ndarray:
        return self.aligner.align(image, detection)

    def enrolment_embedding(self, image: np.ndarray) -> tuple[np.ndarray | None, str | None]:
        """(the embedding of the one person in an enrolment photo, None) or (None, why the photo is refused)."""
        face, why = enrolment_face(self.detector.detect(image))
        if face is None:
            return None, why
        return self.embed_aligned([self.align(image, face)])[0], None

    def find_face(self, image: np.ndarray, pick: str = "largest") -> Detection | None:
        """The face ``edge.align.pick_face`` chooses among those found."""
        return pick_face(self.detector.detect(image), image.shape, pick)

    def embed_image(self, image: np.ndarray, pick: str = "largest") -> np.ndarray | None:
        """The normalised embedding of the chosen face in ``image``, or None if no face is found."""
        face = self.find_face(image, pick)
        if face is None:
            return None
        return self.embed_aligned([self.align(image, face)])[0]

    def match(self, embedding: np.ndarray) -> tuple[str | None, float, str | None]:
        if not self.templates.names:
            return None, -1.0, None
        similarities = self.templates.matrix @ embedding
        best = int(np.argmax(similarities))
        score = float(similarities[best])
        name = self.templates.names[best]
        return (name if score >= self.threshold else None), score, name

    def identity_score(self, embedding: np.ndarray, name: str) -> float:
        """The cosine of ``embedding`` to ``name``'s template (-1 when ``name`` is not enrolled)."""
        if name not in self.templates.names:
            return -1.0
        return float(self.templates.matrix[self.templates.names.index(name)] @ embedding)

    def process(self, image: np.ndarray) -> FrameResult:
        timings = dict.fromkeys(STAGES, 0.0)
        start = time.perf_counter()
        detections: list[Detection] = self.detector.detect(image)
        timings["detect"] = ms_since(start)
        decisions = []
        for det in detections:
            t = time.perf_counter()
            aligned = self.align(image, det)
            timings["align"] += ms_since(t)
            t = time.perf_counter()
            embedding = self.embed_aligned([aligned])[0]
            timings["embed"] += ms_since(t)
            t = time.perf_counter()
            identity, score, best = self.match(embedding)
            timings["match"] += ms_since(t)
            decisions.append(Decision([round(float(v), 1) for v in det.box], round(det.score, 4), identity,
                                      round(score, 4), best, np.round(det.keypoints[:4], 1).tolist()))
        timings["total"] = ms_since(start)
        return FrameResult(decisions, timings)

    def close(self) -> None:
        for detector in self.detectors.values():
            detector.model.close()
        self.embedder.close()
        if self.gallery:
            self.gallery.close()


def embed_faces(model: LoadedModel, faces, mirror_average: bool) -> np.ndarray:
    """Aligned BGR crops -> L2-normalised embeddings (N, D), one face per call: the one way the kiosk embeds, which
    compile also uses to calibrate each file's threshold.

    With mirror averaging (set per artifact by compile) each embedding is the normalised sum of the face's and its
    mirror image's, computed in one batch of two: 1.7x the time of one face rather than 2x (dlib's ResNet, INT8,
    this CPU)."""
    output = model.entry.outputs[0].name
    rows = []
    for face in faces:
        batch = [face, face[:, ::-1]] if mirror_average else [face]
        vectors = [_unit(v) for v in model.run_images(batch)[output]]
        rows.append(_unit(np.sum(vectors, axis=0)))
    return np.asarray(rows, np.float32).reshape(len(faces), -1)


def _unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, np.float32).reshape(-1)
    return vector / (np.linalg.norm(vector) + 1e-12)


def ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
