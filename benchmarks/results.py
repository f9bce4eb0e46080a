"""Contract 7, the benchmark result: one JSON file per measurement, the only thing reports are made from.

Every result holds ``schema_version``, ``kind`` (latency | pipeline | verify), ``created``, the
``environment`` (benchmarks.environment) and the raw timings in ms beside their summary, so any later
statistic can be recomputed from the file alone. Files live in ``<results>/<board>/``; ``report.md`` there is
regenerated from all of them after every run, never edited by hand.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.render import render_report
from edge.base.errors import UserError
from edge.base.interrupts import make_folder

SCHEMA_VERSION = 1
KINDS = ("latency", "pipeline", "verify", "identify", "detect", "peers", "liveness", "fleet")
DEFAULT_RESULTS = "results"
REPORT_NAME = "report.md"


def new_result(kind: str, environment: dict, **fields) -> dict:
    if kind not in KINDS:
        raise ValueError(f"unknown result kind {kind!r}")
    return {"schema_version": SCHEMA_VERSION, "kind": kind,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "environment": environment, **fields}


def _slug(text: str) -> str:
    """A file-name-safe form of a model name, source URI or pairs file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "unnamed"


def result_filename(result: dict) -> str:
    """``latency-verifier.onnx.int8-onnxruntime.json``, ``detect-testing-tiled-tflite-fp32.json``,
    ``pipeline-stage_clip_360p-dlib_resnet.onnx.int8-onnxruntime-1threads.json``: one file per board, measurement,
    model, backend and precision (and threads, for a pipeline), so a rerun of the same measurement replaces its file
    and no other."""
    kind = result["kind"]
    if kind == "latency":
        parts = [result["model"]["name"], result["backend"]]
    elif kind == "pipeline":                # the verifier's file (its precision in the name), its backend, threads
        ran = result.get("pipeline") or {}
        parts = [Path(result["source"]).stem or result["source"],
                 *([ran["verifier"], ran["verifier_backend"]] if "verifier" in ran else
                   [str(ran.get("anonymise", "")).split(" ")[0]]), f"{result['environment']['threads']}threads"]
    elif kind == "peers":
        parts = [Path(result["source"]).stem or result["source"],
                 *(result[key] for key in ("model", "backend") if key in result)]     # results from before name none
    elif kind == "liveness":
        parts = [Path(result["attacks"]).name]
    elif kind == "identify":
        parts = ["+".join(Path(p).name for p in result["images"].split(", ")), result["model"]["name"],
                 result["backend"]]
    elif kind == "fleet":
        parts = [f"{result['kiosks']}kiosks"]
    elif kind == "detect":
        precisions = "/".join(sorted({m["precision"] for m in result["models"]}))
        parts = [Path(result["boxes"]).stem, result["strategy"], result["backend"], precisions]
    else:
        parts = [Path(result["pairs"]).stem, result["model"]["name"], result["backend"]]
    return "-".join([kind] + [_slug(p) for p in parts]) + ".json"


def board_folder(results_dir: str | Path, board: str) -> Path:
    return Path(results_dir) / board


def write_results(results_dir: str | Path, board: str, results: list[dict]) -> tuple[list[Path], Path]:
    """Writes each result to ``<results>/<board>/`` and regenerates that folder's report; returns the paths."""
    folder = make_folder(board_folder(results_dir, board))
    paths = []
    for result in results:
        path = folder / result_filename(result)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(path)  # atomic: a report run at the same time never reads half a file
        paths.append(path)
    return paths, write_report(folder)


def load_results(folder: str | Path) -> list[dict]:
    """All result files of a board folder, in file-name order; a file of another schema is refused by name."""
    results = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise UserError(f"{path} is not valid JSON ({err}); delete it or rerun its benchmark") from err
        if not isinstance(raw, dict) or raw.get("schema_version") != SCHEMA_VERSION or raw.get("kind") not in KINDS:
            raise UserError(f"{path} is not a benchmark result of schema version {SCHEMA_VERSION}; "
                            f"move it out of {folder} or rerun its benchmark")
        results.append(raw)
    return results


def write_report(folder: str | Path) -> Path:
    folder = Path(folder)
    path = folder / REPORT_NAME
    path.write_text(render_report(load_results(folder), title=f"Benchmarks: {folder.name}"))
    return path
