"""Verification and image metrics in numpy, shared by the trainer's evaluation and the on-board benchmarks."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray, max_value: float = 1.0) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(max_value ** 2 / mse))


def ssim(a: np.ndarray, b: np.ndarray, max_value: float = 1.0) -> float:
    """Structural similarity of two images (H, W, C or C, H, W with C <= 4), Wang et al. 2004: an 11-tap Gaussian
    window of sigma 1.5, K1 0.01, K2 0.03, averaged over pixels and channels."""
    import cv2

    a, b = (np.asarray(x, np.float64) for x in (a, b))
    if a.ndim == 3 and a.shape[0] <= 4 < a.shape[-1]:
        a, b = a.transpose(1, 2, 0), b.transpose(1, 2, 0)             # C,H,W -> H,W,C
    c1, c2 = (0.01 * max_value) ** 2, (0.03 * max_value) ** 2

    def blur(x):
        return cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(index.mean())


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N, D): |mu_a - mu_b|^2 + tr(Sa + Sb -
    2 (Sa Sb)^1/2), the trace of the root taken from the eigenvalues of Sa^1/2 Sb Sa^1/2 (symmetric, so no
    complex square roots)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    return float(np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def roc_curve(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False- and true-accept rates at every distinct threshold, highest threshold first.

    A pair is accepted when its similarity score >= threshold; ``same`` marks genuine pairs.
    """
    scores = np.asarray(scores, np.float64)
    same = np.asarray(same, bool)
    order = np.argsort(-scores, kind="stable")
    scores, same = scores[order], same[order]
    last_of_tie = np.r_[np.nonzero(np.diff(scores))[0], len(scores) - 1]
    tpr = np.cumsum(same)[last_of_tie] / max(same.sum(), 1)
    fpr = np.cumsum(~same)[last_of_tie] / max((~same).sum(), 1)
    thresholds = scores[last_of_tie]
    return np.r_[0.0, fpr], np.r_[0.0, tpr], np.r_[np.inf, thresholds]


def roc_auc(scores: np.ndarray, same: np.ndarray) -> float:
    fpr, tpr, _ = roc_curve(scores, same)
    return float(np.trapezoid(tpr, fpr))


def equal_error_rate(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(EER, threshold): where the false-accept rate meets the false-reject rate."""
    fpr, tpr, thresholds = roc_curve(scores, same)
    frr = 1.0 - tpr
    i = int(np.argmin(np.abs(fpr - frr)))
    return float((fpr[i] + frr[i]) / 2), float(thresholds[i])


def threshold_at_far(impostor_scores: np.ndarray, far: float) -> float:
    """The one way a false-accept rate becomes a threshold (accept when score >= it), for the trainer's checkpoint
    and compile's calibration curve alike: just above the (k+1)-th highest impostor score, k = floor(far *
    impostors), so at most k impostor pairs pass; the lowest such threshold, so every genuine pair above them does."""
    scores = np.sort(np.asarray(impostor_scores, np.float64))[::-1]
    allowed = min(int(np.floor(far * len(scores) + 1e-9)), len(scores) - 1)
    return float(np.nextafter(scores[allowed], np.inf))


def tar_at_far(scores: np.ndarray, same: np.ndarray, far: float) -> float:
    fpr, tpr, _ = roc_curve(scores, same)
    return float(tpr[np.nonzero(fpr <= far)[0][-1]])


def accuracy_at(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    return float(np.mean((np.asarray(scores) >= threshold) == np.asarray(same, bool)))


def balanced_accuracy(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    """Mean of the true-accept and true-reject rates: what a threshold does for people and for strangers alike,
    whatever the mix of genuine and impostor pairs."""
    accepted = np.asarray(scores) >= threshold
    same = np.asarray(same, bool)
    return float((np.mean(accepted[same]) + np.mean(~accepted[~same])) / 2)


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold with the highest accuracy, midway between neighbouring scores."""
    values = np.unique(scores)
    candidates = np.r_[values[0] - 1e-6, (values[:-1] + values[1:]) / 2, values[-1] + 1e-6]
    # Correct decisions at every candidate at once (accept when score >= t): O(n log n), not one pass each.
    scores, same = np.asarray(scores, np.float64), np.asarray(same, bool)
    genuine, impostor = np.sort(scores[same]), np.sort(scores[~same])
    accepted = len(genuine) - np.searchsorted(genuine, candidates, side="left")
    rejected = np.searchsorted(impostor, candidates, side="left")
    return float(candidates[int(np.argmax(accepted + rejected))])


@dataclass(frozen=True)
class FoldAccuracy:
    mean: float
    std: float
    threshold: float     # mean of the per-fold thresholds


def kfold_accuracy(scores: np.ndarray, same: np.ndarray, folds: int = 10) -> FoldAccuracy:
    """LFW-protocol accuracy: each fold is scored at the threshold chosen on the other folds."""
    scores = np.asarray(scores, np.float64)
    same = np.asarray(same, bool)
    if len(scores) < folds:
        raise ValueError(f"need at least {folds} pairs for {folds}-fold accuracy, got {len(scores)}")
    fold_of = np.arange(len(scores)) % folds
    accuracies, thresholds = [], []
    for k in range(folds):
        train, test = fold_of != k, fold_of == k
        threshold = best_threshold(scores[train], same[train])
        thresholds.append(threshold)
        accuracies.append(accuracy_at(scores[test], same[test], threshold))
    return FoldAccuracy(float(np.mean(accuracies)), float(np.std(accuracies)), float(np.mean(thresholds)))


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (N, D) arrays."""
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
