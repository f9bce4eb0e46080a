"""Held-out evaluation: verification on unseen identities, reconstruction quality for generators.

The metric formulas live in edge.base.metrics so the trainer and the on-board benchmarks report the same numbers.
"""
from __future__ import annotations

import numpy as np
import torch

from edge.base import metrics
from edge.base.progress import progress_bar
from edge.runtime.manifest import InputSpec
from trainer.data import FaceSet, batches, to_tensor
from trainer.device import device_of

MIN_KFOLD_PAIRS = 20   # below this a fold holds one or two pairs; report best-threshold accuracy instead


@torch.no_grad()
def embed(model: torch.nn.Module, images: np.ndarray, spec: InputSpec, batch_size: int = 64,
          channels_last: bool = False, mirror: bool = False, desc: str | None = None) -> np.ndarray:
    """L2-normalised embeddings (N, D, float64) of uint8 BGR crops, in eval mode. Without ``mirror``, no test-time
    flips (a runtime that does not flip then holds the threshold calibrated here); with it, each embedding is the
    normalised sum of the face's and its mirror image's, as the kiosk's mirror averaging computes it. ``desc``
    shows a progress bar."""
    model.eval()
    device = device_of(model)
    rows = []
    bar = progress_bar(total=len(images), desc=desc, unit="face", disable=desc is None)
    for index in batches(len(images), batch_size):
        chunk = images[index]
        vectors = _unit(model(to_tensor(chunk, spec, channels_last, device)).cpu())
        if mirror:
            vectors = _unit(vectors + _unit(model(to_tensor(chunk[:, :, ::-1], spec, channels_last, device)).cpu()))
        rows.append(vectors)
        bar.update(len(chunk))
    bar.close()
    return torch.cat(rows).numpy()


def _unit(vectors: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(vectors.double(), dim=1)


def make_pairs(labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every genuine pair, plus as many distinct random impostor pairs (fewer only if fewer exist).

    Returns (first index, second index, same-identity flag).
    """
    first, second = np.triu_indices(len(labels), k=1)
    same = labels[first] == labels[second]
    genuine = np.nonzero(same)[0]
    impostor = np.nonzero(~same)[0]
    impostor = rng.choice(impostor, size=min(len(genuine), len(impostor)), replace=False)
    chosen = np.concatenate([genuine, impostor])
    # Interleave the two kinds so that k-fold's round-robin folds each hold both.
    chosen = chosen[rng.permutation(len(chosen))]
    return first[chosen], second[chosen], same[chosen]


def verification_metrics(scores: np.ndarray, same: np.ndarray, target_far: float) -> dict:
    """Accuracy, AUC, EER, TAR@FAR and the decision threshold at ``target_far``, all on cosine scores."""
    if len(scores) >= MIN_KFOLD_PAIRS:
        folds = metrics.kfold_accuracy(scores, same, folds=10)
        accuracy, accuracy_std, protocol = folds.mean, folds.std, "10-fold"
    else:
        accuracy = metrics.accuracy_at(scores, same, metrics.best_threshold(scores, same))
        accuracy_std, protocol = 0.0, "best threshold (too few pairs for 10-fold)"
    eer, eer_threshold = metrics.equal_error_rate(scores, same)
    threshold = metrics.threshold_at_far(scores[~np.asarray(same, bool)], target_far)
    return {
        "accuracy": accuracy, "accuracy_std": accuracy_std, "accuracy_protocol": protocol,
        "auc": metrics.roc_auc(scores, same), "eer": eer, "eer_threshold": eer_threshold,
        "target_far": target_far, "threshold": threshold,
        "tar_at_far": metrics.tar_at_far(scores, same, target_far),
        "accuracy_at_threshold": metrics.accuracy_at(scores, same, threshold),
        "genuine_pairs": int(np.sum(same)), "impostor_pairs": int(np.sum(~np.asarray(same, bool))),
        "genuine_mean": float(np.mean(scores[same])), "impostor_mean": float(np.mean(scores[~same])),
    }


def evaluate_verifier(model: torch.nn.Module, faces: FaceSet, spec: InputSpec, target_far: float,
                      rng: np.random.Generator, batch_size: int = 64, channels_last: bool = False) -> dict:
    vectors = embed(model, faces.images, spec, batch_size, channels_last)
    first, second, same = make_pairs(faces.labels, rng)
    scores = np.sum(vectors[first] * vectors[second], axis=1)     # cosine: the vectors are unit length
    return verification_metrics(scores, same, target_far)


@torch.no_grad()
def reconstruct(model: torch.nn.Module, images: np.ndarray, spec: InputSpec,
                batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, reconstructions) as float arrays in the model's value range, N,3,H,W."""
    model.eval()
    inputs, outputs = [], []
    for index in batches(len(images), batch_size):
        x = to_tensor(images[index], spec, device=device_of(model))
        inputs.append(x.cpu().numpy())
        outputs.append(model(x).cpu().numpy())
    return np.concatenate(inputs), np.concatenate(outputs)


def reconstruction_metrics(inputs: np.ndarray, outputs: np.ndarray) -> dict:
    """PSNR over the whole held-out set (max value 1.0: the generator spec maps pixels to [0, 1]) and MSE."""
    # float(): edge.base.metrics.psnr can return a numpy scalar, which the weights-only checkpoint loader refuses.
    return {"psnr": float(metrics.psnr(outputs, inputs, max_value=1.0)),
            "mse": float(np.mean((outputs.astype(np.float64) - inputs) ** 2))}
