"""``python -m benchmarks compare OLD NEW``: a regression check whose tolerance is the measured noise.

Results are matched by what they measured (a model file on a backend; a verifier on a pairs file) and compared
from their raw data: each latency's p50 ratio gets a 95 % bootstrap interval from its own timings, each verifier's
ROC AUC difference one from its pair scores. A difference counts only when the whole interval lies beyond
MIN_SLOWDOWN (latency) or MIN_AUC_DROP (accuracy): smaller ones are within what the machine's noise and the
pairs' sampling make of a rerun. Exit 1 on a real slowdown or accuracy loss, with the rows that show it, and on
a measurement that is missing from either side or cannot be compared (no timings, a NaN): never a silent skip.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.timing import central_interval
from edge.base.errors import UserError
from edge.base.metrics import roc_auc

BOOTSTRAP = 1000
CONFIDENCE = 0.95
MIN_SLOWDOWN = 0.03       # a p50 at least 3 % slower, with the whole interval beyond it, is a regression
MIN_AUC_DROP = 0.005


@dataclass(frozen=True)
class Comparison:
    what: str
    measure: str               # "latency p50" | "ROC AUC"
    old: float
    new: float
    change: str                # "+4.1 % (95 %: +2.0 .. +6.3 %)"
    verdict: str               # "slower" | "faster" | "worse" | "better" | "within noise"
    regression: bool


def load_folder(path: Path) -> list[dict]:
    """Every result under ``path`` (a board folder, a results folder of boards, or one JSON file)."""
    if not path.exists():
        raise UserError(f"{path} does not exist")
    files = [path] if path.is_file() else sorted(path.rglob("*.json"))
    if not files:
        raise UserError(f"{path} holds no benchmark results (*.json): run python -m benchmarks latency ... first")
    results = []
    for file in files:
        try:
            results.append(json.loads(file.read_text()))
        except json.JSONDecodeError as err:
            raise UserError(f"{file} is not valid JSON ({err})") from err
    return results


def identity(result: dict) -> tuple | None:
    board = result.get("environment", {}).get("board")
    if result.get("kind") == "latency":
        return "latency", board, result["model"]["name"], result["backend"]
    if result.get("kind") == "verify":
        return "verify", board, Path(result["pairs"]).name, result["model"]["name"], result["backend"]
    return None                  # pipeline and detect runs hold summaries, not samples to bootstrap


def compare(old: list[dict], new: list[dict], seed: int = 0) -> list[Comparison]:
    versions = {r.get("schema_version") for r in old} | {r.get("schema_version") for r in new}
    if len(versions) != 1:
        raise UserError(f"the results are of different schema versions ({', '.join(map(str, sorted(versions)))}): "
                        "rerun the older benchmarks with this version before comparing")
    rng = np.random.default_rng(seed)
    before = {identity(r): r for r in old if identity(r)}
    after = {identity(r): r for r in new if identity(r)}
    if not before.keys() & after.keys():
        raise UserError("no measurement appears in both OLD and NEW (matched by board, model file and backend)")
    rows = []
    for key in sorted(before.keys() | after.keys(), key=str):
        what = " / ".join(str(part) for part in key[1:])
        measure = "latency p50 ms" if key[0] == "latency" else "ROC AUC"
        sides = {"OLD": before.get(key), "NEW": after.get(key)}
        problem = next((f"missing in {side}" for side, result in sides.items() if result is None), None) or next(
            (f"unreadable in {side}: {why}" for side, result in sides.items() if (why := _unusable(key[0], result))),
            None)
        if problem:
            rows.append(Comparison(what, measure, float("nan"), float("nan"), "-", problem, True))
        elif key[0] == "latency":
            rows.append(_latency(what, before[key], after[key], rng))
        else:
            rows.append(_accuracy(what, before[key], after[key], rng))
    return rows


def _unusable(kind: str, result: dict) -> str:
    """Why a result's raw data cannot be compared ("" when it can)."""
    fields = ("timings_ms",) if kind == "latency" else ("scores", "same")
    for field in fields:
        values = result.get(field)
        if not values:
            return f"no {field}"
        if field != "same" and not np.isfinite(np.asarray(values, np.float64)).all():
            return f"{field} holds NaN or infinite values"
    return ""


def _latency(what: str, old: dict, new: dict, rng: np.random.Generator) -> Comparison:
    a, b = np.asarray(old["timings_ms"], np.float64), np.asarray(new["timings_ms"], np.float64)
    ratios = np.array([np.median(rng.choice(b, b.size)) / np.median(rng.choice(a, a.size))
                       for _ in range(BOOTSTRAP)])
    ratio = float(np.median(b) / np.median(a))
    low, high = central_interval(ratios, CONFIDENCE)
    slower, faster = low > 1 + MIN_SLOWDOWN, high < 1 - MIN_SLOWDOWN
    change = f"{100 * (ratio - 1):+.1f} % (95 %: {100 * (low - 1):+.1f} .. {100 * (high - 1):+.1f} %)"
    verdict = "slower" if slower else "faster" if faster else "within noise"
    return Comparison(what, "latency p50 ms", float(np.median(a)), float(np.median(b)), change, verdict, slower)


def _accuracy(what: str, old: dict, new: dict, rng: np.random.Generator) -> Comparison:
    def auc_draws(result):
        scores, same = np.asarray(result["scores"], np.float64), np.asarray(result["same"], bool)
        picks = rng.integers(0, len(scores), (BOOTSTRAP, len(scores)))
        return roc_auc(scores, same), np.array([roc_auc(scores[p], same[p]) for p in picks])

    (auc_old, draws_old), (auc_new, draws_new) = auc_draws(old), auc_draws(new)
    low, high = central_interval(draws_new - draws_old, CONFIDENCE)
    worse, better = high < -MIN_AUC_DROP, low > MIN_AUC_DROP
    change = f"{auc_new - auc_old:+.4f} (95 %: {low:+.4f} .. {high:+.4f})"
    verdict = "worse" if worse else "better" if better else "within noise"
    return Comparison(what, "ROC AUC", auc_old, auc_new, change, verdict, worse)


def render(rows: list[Comparison]) -> str:
    lines = ["| measurement | measure | old | new | change | verdict |", "|---|---|---:|---:|---|---|"]
    lines += [f"| {r.what} | {r.measure} | {r.old:.4g} | {r.new:.4g} | {r.change} | "
              f"{'**' + r.verdict + '**' if r.regression else r.verdict} |" for r in rows]
    failed = sum(r.change == "-" for r in rows)
    regressions = sum(r.regression for r in rows) - failed
    lines += ["", f"{len(rows) - failed} measurements compared; {regressions} regression(s) beyond the noise (a "
                  f"latency p50 counts when its whole {100 * CONFIDENCE:.0f} % bootstrap interval is more than "
                  f"{100 * MIN_SLOWDOWN:.0f} % slower; an AUC when it is more than {MIN_AUC_DROP} lower); "
                  f"{failed} missing or unreadable on one side (each a failure)."]
    return "\n".join(lines)
