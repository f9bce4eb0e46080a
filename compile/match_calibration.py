"""Each verifier file's own threshold and its real-pair gates, measured with the backend that runs it.

For every kept verifier artifact (and the PyTorch FP32 model it came from) compile embeds the same real faces,
then: places the threshold on every impostor pair of the calibration identities; quotes balanced accuracy,
TAR, TRR and AUC on the report identities; refuses the model when its FP32 AUC on real pairs is under a floor
(a collapsed verifier passes every cosine gate); refuses an artifact whose accept/reject decisions differ from
FP32's on more than 0.2 % of report pairs; and lists the sibling files whose gallery templates it may match
(cross pairs, template from one file and probe from the other, within the same 0.2 %).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compile.real_pairs import PairFaces
from edge.base.metrics import roc_auc
from edge.faces.matching import curve_threshold, far_curve
from edge.faces.reader import embed_faces
from edge.faces.score_norm import ScoreNorm
from edge.runtime.backends.base import BackendOptions
from edge.runtime.boards import BoardConfig
from edge.runtime.manifest import MatchCalibration, ModelEntry
from edge.runtime.models import backend_here, load_model

FLIP_BUDGET = 0.002            # at most 0.2 % of pair decisions may change against the FP32 model
DEFAULT_TARGET_FAR = 1e-3      # false accepts per probe the kiosk aims at
DEFAULT_MIN_AUC = 0.90         # below this on real pairs the FP32 model does not separate people
TORCH_BATCH = 32


@dataclass(frozen=True)
class MatchOptions:
    target_far: float = DEFAULT_TARGET_FAR
    min_auc: float = DEFAULT_MIN_AUC
    mirror_average: bool = True      # dlib's ResNet: +0.5 point on ORL pairs, 1.16x the time on two cores


@dataclass(frozen=True)
class Measured:
    """One embedder's calibration on real pairs."""

    match: MatchCalibration
    vectors: np.ndarray          # N,D unit embeddings of every pair face
    auc: float                   # on every pair of both halves
    norm: ScoreNorm | None = None  # the embedder's cohort: scores are its S-norm (edge.faces.score_norm)


def artifact_vectors(bundle_dir: Path, entry: ModelEntry, chips: np.ndarray, board: BoardConfig, threads: int,
                     mirror: bool) -> np.ndarray:
    """Embeddings through the backend the board runs this file with, computed by the kiosk's own ``embed_faces``."""
    loaded = load_model(bundle_dir, entry, backend_here(entry, board)[0], BackendOptions(threads=threads))
    try:
        return embed_faces(loaded, chips, mirror).astype(np.float64)
    finally:
        loaded.close()


def measure(vectors: np.ndarray, faces: PairFaces, options: MatchOptions, norm: ScoreNorm | None = None) -> Measured:
    calibration, report = faces.calibration_pairs, faces.report_pairs
    scores = calibration.scores(vectors, norm=norm)
    impostor = scores[~calibration.same]
    curve = far_curve(impostor, options.target_far)
    threshold = curve_threshold(curve, options.target_far)         # a gallery of one
    reported = report.scores(vectors, norm=norm)
    accepted = reported >= threshold
    tar = float(np.mean(accepted[report.same])) if report.same.any() else float("nan")
    trr = float(np.mean(~accepted[~report.same]))
    all_scores = np.concatenate([scores, reported])
    all_same = np.concatenate([calibration.same, report.same])
    summary = {"pairs": int(len(reported)), "genuine": int(report.same.sum()),
               "balanced_accuracy": (tar + trr) / 2, "tar": tar, "trr": trr,
               "auc": roc_auc(reported, report.same), "genuine_mean": float(np.mean(reported[report.same])),
               "impostor_mean": float(np.mean(reported[~report.same])), "faces_without_detection": faces.no_face,
               "faces_fingerprint": faces.fingerprint}
    match = MatchCalibration(source=faces.describe(), target_far=options.target_far, threshold=float(threshold),
                             impostor_pairs=int(len(impostor)), genuine_pairs=int(calibration.same.sum()),
                             far_curve=curve, mirror_average=options.mirror_average, report=summary)
    return Measured(match, vectors, roc_auc(all_scores, all_same), norm)


def flip_rate(faces: PairFaces, reference: Measured, candidate: Measured, templates: np.ndarray | None = None) -> float:
    """Share of report pairs decided differently from the reference; with ``templates`` (another file's
    embeddings) the candidate scores a template of that file against its own probe."""
    report = faces.report_pairs
    expected = report.scores(reference.vectors, norm=reference.norm) >= reference.match.threshold
    scores = report.scores(candidate.vectors if templates is None else templates, candidate.vectors,
                           norm=candidate.norm)
    return float(np.mean((scores >= candidate.match.threshold) != expected))
