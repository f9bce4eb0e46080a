"""The percentile summary and bootstrap intervals every benchmark uses; the timing loop itself is
``edge.base.timing`` (compile times files too, and may not import benchmarks)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PERCENTILES = (50, 90, 99)


def summarize(times_ms: Sequence[float]) -> dict:
    """p50/p90/p99/mean/min/max in ms and throughput per second (1000 / mean) of a list of timings."""
    values = np.asarray(times_ms, np.float64)
    if values.size == 0:
        return {"count": 0, "p50": None, "p90": None, "p99": None, "mean": None, "min": None, "max": None,
                "throughput_per_s": None}
    mean = float(values.mean())
    summary = {"count": int(values.size)}
    summary.update({f"p{q}": float(np.percentile(values, q)) for q in PERCENTILES})
    summary.update({"mean": mean, "min": float(values.min()), "max": float(values.max()),
                    "throughput_per_s": 1000.0 / mean if mean > 0 else None})
    return summary


def central_interval(draws: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The interval holding the middle ``confidence`` share of bootstrap draws."""
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def median_interval(times_ms: Sequence[float], draws: int = 300, confidence: float = 0.95,
                    seed: int = 0) -> tuple[float, float] | None:
    """A bootstrap interval of the median: how far a rerun's p50 could land from this one's by chance alone."""
    values = np.asarray(times_ms, np.float64)
    if values.size < 2:
        return None
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(values, (draws, values.size)), axis=1)
    return central_interval(medians, confidence)

