"""Adaptive score normalisation (S-norm) against a cohort of faces of people nobody enrolls.

A raw cosine means different things for different faces: a frontal, sharp, average-looking face scores high
against many strangers, a dark profile low against everyone, so one threshold is too loose for the first and too
strict for the second. S-norm places each score among the scores the same two faces reach against strangers: the
probe's ``top`` highest cosines to the cohort give a mean and a deviation, the enrolled template's give another,
and the normalised score is the average of the score standardised by each (``normalise``). A stranger then scores
near zero against anyone, however typical their face; the same person well above it.

The cohort ships in the bundle as templates (``cohort.<verifier file>.npz``, made by compile from faces of
``../shared/data/faces80``, never from the faces being evaluated), one per verifier file: templates of one file
are not comparable with another's. The kiosk, ``benchmarks identify`` and compile's calibration all score with
``ScoreNorm``, so a threshold measured by compile means the same in the kiosk.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.base.errors import UserError
from edge.runtime.manifest import ModelEntry

COHORT_TOP = 200          # the highest cohort scores each face's mean and deviation come from
MIN_DEVIATION = 1e-3      # a face whose top cohort scores are all equal (a blank image) is not divided by zero


@dataclass(frozen=True)
class CohortStats:
    """Each face's mean and deviation of its ``top`` highest cosines to the cohort."""

    mean: np.ndarray             # (N,)
    deviation: np.ndarray        # (N,)

    def take(self, index) -> "CohortStats":
        return CohortStats(self.mean[index], self.deviation[index])


class ScoreNorm:
    def __init__(self, cohort: np.ndarray, top: int = COHORT_TOP):
        cohort = np.asarray(cohort, np.float32)
        if cohort.ndim != 2 or len(cohort) < top:
            raise UserError(f"a score-normalisation cohort needs at least {top} templates, got {len(cohort)}")
        self.cohort, self.top = cohort, top

    @classmethod
    def load(cls, path: Path, top: int = COHORT_TOP) -> "ScoreNorm":
        with np.load(path, allow_pickle=False) as data:
            return cls(data["vectors"], top)

    def stats(self, vectors: np.ndarray, chunk: int = 4096) -> CohortStats:
        """Cohort statistics of unit ``vectors`` (N, D), in chunks so that a large gallery needs little memory."""
        vectors = np.atleast_2d(np.asarray(vectors, np.float32))
        means, deviations = [], []
        for start in range(0, len(vectors), chunk):
            scores = vectors[start:start + chunk] @ self.cohort.T
            highest = np.partition(scores, -self.top, axis=1)[:, -self.top:]
            means.append(highest.mean(axis=1))
            deviations.append(np.maximum(highest.std(axis=1), MIN_DEVIATION))
        return CohortStats(np.concatenate(means) if means else np.zeros(0, np.float32),
                           np.concatenate(deviations) if deviations else np.zeros(0, np.float32))

    @staticmethod
    def normalise(scores: np.ndarray, probe: CohortStats, enrolled: CohortStats) -> np.ndarray:
        """S-norm of raw cosines ``scores`` (probes along the first axis when 2-D, enrolled along the last) given
        each side's statistics."""
        scores = np.asarray(scores, np.float32)
        probe_mean, probe_dev = (probe.mean, probe.deviation) if scores.ndim < 2 else (
            probe.mean[:, None], probe.deviation[:, None])
        return 0.5 * ((scores - probe_mean) / probe_dev + (scores - enrolled.mean) / enrolled.deviation)

    def pair(self, first: np.ndarray, second: np.ndarray) -> float:
        """The normalised score of two unit embeddings (two looks of a visit, a look and a template)."""
        return float(self.normalise(np.float32(first @ second), self.stats(first), self.stats(second))[0])


def file_sha1(path: Path) -> str:
    """How a cohort names the image files it was made from."""
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def cohort_image_hashes(bundle_dir: Path, entry: ModelEntry) -> set[str]:
    """The sha1 of every image the verifier file's cohort was made from (none without a cohort)."""
    if entry.cohort is None:
        return set()
    with np.load(Path(bundle_dir) / entry.cohort.file, allow_pickle=False) as data:
        return set(data["image_sha1"].tolist())


def bundle_score_norm(bundle_dir: Path, entry: ModelEntry) -> ScoreNorm | None:
    """The verifier file's cohort as its manifest names it (read_manifest checked its checksum), None when its
    scores are plain cosines."""
    cohort = entry.cohort
    return ScoreNorm.load(Path(bundle_dir) / cohort.file, cohort.top) if cohort is not None else None


class TemplateScorer:
    """Scores of probes against enrolled templates as the kiosk decides on them: cosines, or their S-norm when the
    verifier has a cohort (each template's cohort statistics computed once, here)."""

    def __init__(self, templates: np.ndarray, norm: ScoreNorm | None = None):
        self.templates = np.asarray(templates, np.float32)
        self.norm = norm
        self.enrolled = norm.stats(self.templates) if norm is not None and len(self.templates) else None

    def scores(self, probes: np.ndarray) -> np.ndarray:
        """(P, N) scores of P unit probes (a single probe: (N,)) against the N templates."""
        probes = np.asarray(probes, np.float32)
        raw = probes @ self.templates.T
        if self.enrolled is None:
            return raw
        return self.norm.normalise(raw, self.norm.stats(probes), self.enrolled)

    def score(self, probe: np.ndarray, index: int) -> float:
        """One probe's score against template ``index`` alone."""
        raw = np.float32(self.templates[index] @ np.asarray(probe, np.float32))
        if self.enrolled is None:
            return float(raw)
        return float(self.norm.normalise(raw, self.norm.stats(probe), self.enrolled.take(index))[0])

    def best(self, probe: np.ndarray) -> tuple[int, float]:
        """The template that scores highest against one probe, and its score."""
        scores = self.scores(probe)
        best = int(np.argmax(scores))
        return best, float(scores[best])
