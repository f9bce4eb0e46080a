"""The accuracy gate: each artifact, run by the edge backend that will run it, against the PyTorch FP32 model.

Measured on held-out images one at a time (batch 1, as the runtime runs), so a graph whose batch axis broke in
conversion fails here rather than on the board.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edge.backends.base import BackendOptions
from edge.boards import BoardConfig
from edge.manifest import ModelEntry
from edge.metrics import cosine_similarity, psnr
from edge.runtime import backend_on_board, load_model

REFERENCE = "torch-fp32"


def torch_reference(model: torch.nn.Module, batch: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(torch.from_numpy(batch)).numpy()


def run_artifact(bundle_dir: Path, entry: ModelEntry, batch: np.ndarray, board: BoardConfig,
                 threads: int) -> tuple[np.ndarray, str]:
    """The artifact's first output for every image of ``batch``, and the backend the board would run it with."""
    backend = backend_on_board(entry, board)
    loaded = load_model(bundle_dir, entry, backend, BackendOptions(threads=threads))
    output = entry.outputs[0].name
    try:
        outputs = [loaded.infer_image_batch(batch[i:i + 1])[output] for i in range(len(batch))]
    finally:
        loaded.close()
    return np.concatenate(outputs), backend


def compare(task: str, reference: np.ndarray, candidate: np.ndarray) -> dict:
    """Per-image agreement; verify: embedding cosine; generate: cosine of mean-centred images (a plain cosine of
    [0, 1] images is near 1 for almost any output) and PSNR for information."""
    if task == "verify":
        scores = cosine_similarity(reference, candidate)
        result = {"metric": "cosine"}
    else:
        scores = cosine_similarity(reference - 0.5, candidate - 0.5)
        # identical outputs have infinite PSNR; cap at 120 dB so the mean stays a number
        db = [min(psnr(r, c), 120.0) for r, c in zip(reference, candidate)]
        result = {"metric": "cosine_centred", "psnr_db_mean": round(float(np.mean(db)), 2)}
    return {**result, "mean": float(scores.mean()), "min": float(scores.min()), "images": len(scores)}


def gate(task: str, reference: np.ndarray, candidate: np.ndarray, budget: float, backend: str,
         floor: float | None = None) -> dict:
    """The manifest's accuracy record: ``passed`` needs the mean at the board's budget and, with a ``floor``,
    every single image at or above it (a mean can hide a few faces the quantized file gets badly wrong)."""
    measured = compare(task, reference, candidate)
    passed = measured["mean"] >= budget and (floor is None or measured["min"] >= floor)
    reason = "" if passed else (f"{measured['metric']} mean {measured['mean']:.5f} (budget {budget}), "
                                f"min {measured['min']:.5f} (floor {floor})")
    return {"reference": REFERENCE, **measured, "budget": budget, "floor": floor, "passed": passed,
            "reason": reason, "backend": backend}
