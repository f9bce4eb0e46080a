"""Verification accuracy of a bundle through the full detect -> align -> embed path, on LFW-format pairs."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.dlib_reference import DlibPipeline, dlib_scores
from benchmarks.environment import collect_environment
from benchmarks.latency import model_facts
from benchmarks.pairs import PairsFile, find_image, parse_pairs
from benchmarks.results import new_result
from benchmarks.timing import summarize
from edge.base.errors import UserError
from edge.base.imageio import read_image
from edge.base.metrics import (
    accuracy_at,
    balanced_accuracy,
    equal_error_rate,
    kfold_accuracy,
    roc_auc,
    tar_at_far,
)
from edge.base.progress import progress_bar
from edge.base.timing import elapsed_ms
from edge.faces.align import FACE_CHOICES
from edge.faces.pipeline import Pipeline, open_pipeline
from edge.runtime.board_profile import bundle_profile

FARS = {"1e-2": 1e-2, "1e-3": 1e-3}
FAILED_MARGIN = 1.0   # a failed pair scores this far below the lowest real score: rejected at any threshold


@dataclass(frozen=True)
class VerifyOptions:
    bundle: Path
    pairs: Path
    images: Path
    precision: str | None = None
    backend: str | None = None
    threads: int | None = None
    face: str = "centre"          # pair protocols centre the subject; the largest face can be a bystander's
    reference: str | None = None  # "dlib": dlib's own pipeline on the same pairs and folds, side by side


def fold_interleaved(pairs_file: PairsFile) -> list[int]:
    """Pair indices reordered so that position i belongs to fold i % folds.

    edge.base.metrics.kfold_accuracy assigns folds that way; this keeps the pairs file's own folds (people
    disjoint across folds in LFW) instead of mixing them.
    """
    block = 2 * pairs_file.per_fold
    return [fold * block + k for k in range(block) for fold in range(pairs_file.folds)]


def embed_with_pipeline(pipe: Pipeline, face: str):
    """image -> (embedding or None, ms spent aligning and embedding the face, mirror averaging included)."""
    def embed(image: np.ndarray) -> tuple[np.ndarray | None, float | None]:
        found = pipe.faces.find_face(image, face)
        if found is None:
            return None, None
        start = time.perf_counter_ns()
        vector = pipe.faces.embed_aligned([pipe.faces.align(image, found)])[0]
        return vector, elapsed_ms(start)
    return embed


def embed_all(embed, paths: dict[tuple[str, int], Path], desc: str) -> tuple[dict, list[float]]:
    """Each distinct image embedded once: {(name, n): embedding or None}, and the per-face times in ms."""
    embeddings, times = {}, []
    for key, path in progress_bar(paths.items(), desc=desc, unit="img"):
        image = read_image(path)
        if image is None:
            raise UserError(f"image {path} cannot be decoded; replace it or drop its pairs")
        embeddings[key], ms = embed(image)
        if ms is not None:
            times.append(ms)
    return embeddings, times


def failed_pairs(pairs_file: PairsFile, *embedding_sets: dict) -> np.ndarray:
    """A pair fails when any pipeline compared found no face on either side: it then fails for all of them."""
    return np.array([any(e[(p.name1, p.n1)] is None or e[(p.name2, p.n2)] is None for e in embedding_sets)
                     for p in pairs_file.pairs], bool)


def score_pairs(pairs_file: PairsFile, embeddings: dict, failed: np.ndarray, score) -> tuple[np.ndarray, np.ndarray]:
    scores = np.array([np.nan if bad else score(embeddings[(p.name1, p.n1)], embeddings[(p.name2, p.n2)])
                       for p, bad in zip(pairs_file.pairs, failed)], np.float64)
    # Below every real score of this pipeline (cosines and negated distances have different ranges).
    floor = np.nanmin(scores) if (~failed).any() else 0.0
    scores[failed] = floor - FAILED_MARGIN
    return scores, np.asarray([p.same for p in pairs_file.pairs])


def run_verify(options: VerifyOptions) -> tuple[str, list[dict]]:
    if options.face not in FACE_CHOICES:
        raise UserError(f"--face must be one of {', '.join(FACE_CHOICES)}, got {options.face!r}")
    if options.reference not in (None, "dlib"):
        raise UserError(f"unknown --reference {options.reference!r}; valid: dlib")
    pairs_file = parse_pairs(options.pairs)
    if pairs_file.folds < 2:
        raise UserError(f"{options.pairs} has 1 fold; k-fold accuracy picks each fold's threshold on the others, "
                        f"so it needs at least 2 (python -m benchmarks pairs --folds 10)")
    keys = sorted({(p.name1, p.n1) for p in pairs_file.pairs} | {(p.name2, p.n2) for p in pairs_file.pairs})
    paths = {key: find_image(options.images, *key) for key in keys}   # every missing image fails before any work
    reference = DlibPipeline(options.face) if options.reference == "dlib" else None
    pipe = open_pipeline(options.bundle, backend=options.backend, threads=options.threads,
                                precision=options.precision, profile=bundle_profile(options.bundle))
    board, threads = pipe.board, pipe.threads
    try:
        embeddings, times = embed_all(embed_with_pipeline(pipe, options.face), paths, "embed")
        entry, backend, threshold = pipe.faces.embedder.entry, pipe.faces.embedder.backend_name, pipe.matcher.threshold
        mirror, pair_score, score_kind = pipe.faces.mirror_average, pipe.matcher.pair_score, pipe.matcher.score_kind
    finally:
        pipe.close()
    theirs, their_times = embed_all(reference.embed, paths, "dlib") if reference else (None, [])
    failed = failed_pairs(pairs_file, embeddings, *([theirs] if theirs else []))
    environment = collect_environment(board, threads, options.bundle)
    common = dict(bundle=str(options.bundle), pairs=str(options.pairs), images=str(options.images),
                  folds=pairs_file.folds, image_count=len(keys), face_choice=options.face,
                  failed_pairs=int(failed.sum()))
    results = [new_result(
        "verify", environment, **common, model=model_facts(entry), backend=backend, mirror_average=mirror,
        score=score_kind, faces_not_found=sum(v is None for v in embeddings.values()), calibrated_threshold=threshold,
        embed_ms=times, embed_summary=summarize(times),
        **pair_metrics(pairs_file, *score_pairs(pairs_file, embeddings, failed, pair_score), threshold))]
    if reference:
        results.append(new_result(
            "verify", environment, **common, model={"name": reference.name, "architecture": "dlib_resnet",
                                                    "format": "dlib", "precision": "fp32"},
            backend=f"dlib {reference.version}", mirror_average=False,
            faces_not_found=sum(v is None for v in theirs.values()), calibrated_threshold=-0.6,
            embed_ms=their_times, embed_summary=summarize(their_times),
            **pair_metrics(pairs_file, *score_pairs(pairs_file, theirs, failed, dlib_scores), -0.6)))
    return board, results


def pair_metrics(pairs_file: PairsFile, scores: np.ndarray, same: np.ndarray, threshold: float | None) -> dict:
    order = fold_interleaved(pairs_file)
    folds = kfold_accuracy(scores[order], same[order], pairs_file.folds)
    eer, eer_threshold = equal_error_rate(scores, same)
    negatives = int((~same).sum())
    return dict(
        pair_count=len(scores), same_pairs=int(same.sum()), different_pairs=negatives,
        accuracy={"mean": folds.mean, "std": folds.std, "threshold": folds.threshold},
        roc_auc=roc_auc(scores, same), eer={"rate": eer, "threshold": eer_threshold},
        # a FAR of 1e-3 means something only with at least 1000 different-person pairs
        tar_at_far={name: tar_at_far(scores, same, far) if negatives * far >= 1 else None
                    for name, far in FARS.items()},
        accuracy_at_calibrated=accuracy_at(scores, same, threshold) if threshold is not None else None,
        balanced_accuracy_at_calibrated=balanced_accuracy(scores, same, threshold) if threshold is not None else None,
        scores=scores.tolist(), same=same.tolist())
