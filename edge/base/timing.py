"""The one interleaved timing loop, for benchmarks and for compile's own choices by measurement (the INT8
activation type, ``compile.int8_gain``). Times come from ``time.perf_counter_ns`` (monotonic, integer
nanoseconds) and are reported in milliseconds."""
from __future__ import annotations

import time
from collections.abc import Callable

from edge.base.progress import progress_bar


def elapsed_ms(start_ns: int) -> float:
    return (time.perf_counter_ns() - start_ns) / 1e6


def time_interleaved(calls: dict[str, Callable[[], object]], warmup: int, repeat: int,
                     desc: str = "timing") -> dict[str, list[float]]:
    """Times every call ``repeat`` times after ``warmup`` untimed calls, in rounds that run each call once.

    Interleaving makes machine noise (other processes, frequency changes, thermal throttling) fall on all
    calls alike, so their ratios (INT8 vs FP32) stay fair on a busy board; back-to-back runs would not.
    """
    for _ in range(warmup):
        for call in calls.values():
            call()
    times: dict[str, list[float]] = {key: [] for key in calls}
    for _ in progress_bar(range(repeat), desc=desc, unit="round"):
        for key, call in calls.items():
            start = time.perf_counter_ns()
            call()
            times[key].append(elapsed_ms(start))
    return times
