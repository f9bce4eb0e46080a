"""Verification accuracy of a bundle through the full detect -> align -> embed path, on LFW-format pairs."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from benchmarks.environment import collect_environment
from benchmarks.latency import model_facts
from benchmarks.pairs import PairsFile, find_image, parse_pairs
from benchmarks.results import new_result
from benchmarks.timing import elapsed_ms, summarize
from edge.errors import UserError
from edge.imageio import read_image
from edge.metrics import accuracy_at, equal_error_rate, kfold_accuracy, roc_auc, tar_at_far
from edge.pipeline import Pipeline

FARS = {"1e-2": 1e-2, "1e-3": 1e-3}
FAILED_SCORE = -1.0   # a pair with an undetected face: rejected at any threshold a verifier could use


@dataclass(frozen=True)
class VerifyOptions:
    bundle: Path
    pairs: Path
    images: Path
    precision: str | None = None
    backend: str | None = None
    threads: int | None = None


def fold_interleaved(pairs_file: PairsFile) -> list[int]:
    """Pair indices reordered so that position i belongs to fold i % folds.

    edge.metrics.kfold_accuracy assigns folds that way; this keeps the pairs file's own folds (people
    disjoint across folds in LFW) instead of mixing them.
    """
    block = 2 * pairs_file.per_fold
    return [fold * block + k for k in range(block) for fold in range(pairs_file.folds)]


def embed_all(pipe: Pipeline, paths: dict[tuple[str, int], Path]) -> tuple[dict, list[float]]:
    """Each distinct image embedded once: {(name, n): embedding or None}, and the per-image times in ms."""
    embeddings, times = {}, []
    for key, path in tqdm(paths.items(), desc="embed", unit="img"):
        image = read_image(path)
        if image is None:
            raise UserError(f"image {path} cannot be decoded; replace it or drop its pairs")
        start = time.perf_counter_ns()
        embeddings[key] = pipe.embed_image(image)
        times.append(elapsed_ms(start))
    return embeddings, times


def score_pairs(pairs_file: PairsFile, embeddings: dict) -> tuple[np.ndarray, np.ndarray]:
    scores, same = [], []
    for pair in pairs_file.pairs:
        a, b = embeddings[(pair.name1, pair.n1)], embeddings[(pair.name2, pair.n2)]
        scores.append(FAILED_SCORE if a is None or b is None else float(np.dot(a, b)))  # both L2-normalised
        same.append(pair.same)
    return np.asarray(scores), np.asarray(same)


def run_verify(options: VerifyOptions) -> tuple[str, dict]:
    pairs_file = parse_pairs(options.pairs)
    if pairs_file.folds < 2:
        raise UserError(f"{options.pairs} has 1 fold; k-fold accuracy picks each fold's threshold on the others, "
                        f"so it needs at least 2 (python -m benchmarks pairs --folds 10)")
    keys = sorted({(p.name1, p.n1) for p in pairs_file.pairs} | {(p.name2, p.n2) for p in pairs_file.pairs})
    paths = {key: find_image(options.images, *key) for key in keys}   # every missing image fails before any work
    pipe = Pipeline.from_bundle(options.bundle, backend=options.backend, threads=options.threads,
                                precision=options.precision)
    board, threads = pipe.board, pipe.threads
    try:
        embeddings, times = embed_all(pipe, paths)
        entry, backend, threshold = pipe.embedder.entry, pipe.embedder.backend_name, pipe.threshold
    finally:
        pipe.close()
    scores, same = score_pairs(pairs_file, embeddings)
    order = fold_interleaved(pairs_file)
    folds = kfold_accuracy(scores[order], same[order], pairs_file.folds)
    eer, eer_threshold = equal_error_rate(scores, same)
    negatives = int((~same).sum())
    failed = sum(1 for p in pairs_file.pairs
                 if embeddings[(p.name1, p.n1)] is None or embeddings[(p.name2, p.n2)] is None)
    result = new_result(
        "verify", collect_environment(board, threads), bundle=str(options.bundle), pairs=str(options.pairs),
        images=str(options.images), model=model_facts(entry), backend=backend, folds=pairs_file.folds,
        pair_count=len(scores), same_pairs=int(same.sum()), different_pairs=negatives,
        image_count=len(keys), faces_not_found=sum(v is None for v in embeddings.values()), failed_pairs=failed,
        accuracy={"mean": folds.mean, "std": folds.std, "threshold": folds.threshold},
        roc_auc=roc_auc(scores, same), eer={"rate": eer, "threshold": eer_threshold},
        # a FAR of 1e-3 means something only with at least 1000 different-person pairs
        tar_at_far={name: tar_at_far(scores, same, far) if negatives * far >= 1 else None
                    for name, far in FARS.items()},
        calibrated_threshold=threshold,
        accuracy_at_calibrated=accuracy_at(scores, same, threshold) if threshold is not None else None,
        embed_ms=times, embed_summary=summarize(times),
        scores=scores.tolist(), same=same.tolist())
    return board, result
