"""The compile report: one row per artifact (kept or rejected), as Markdown for people and JSON for tools."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class ArtifactRow:
    model: str                        # entry name, e.g. "verifier.onnx.int8"
    file: str
    size_kb: float
    metric: str
    mean: float
    min: float
    budget: float
    passed: bool
    backend: str
    psnr_db: float | None = None      # generators only, for information
    threshold: float | None = None    # verifiers with real pairs: this file's own 1:1 threshold
    balanced_accuracy: float | None = None   # at that threshold, on report-identity pairs
    flip_rate: float | None = None    # share of real pair decisions that differ from the FP32 model's
    reason: str = ""                  # why a rejected file was rejected
    note: str = ""                    # how it was checked, when not as the board will run it

    @property
    def status(self) -> str:
        return "kept" if self.passed else "REJECTED"


def render_table(rows: list[ArtifactRow]) -> str:
    lines = ["| model | file | size (KB) | vs torch FP32 | mean | min | budget | PSNR (dB) | threshold | "
             "balanced acc. | flips | backend | status |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        psnr = f"{r.psnr_db:.1f}" if r.psnr_db is not None else ""
        threshold = f"{r.threshold:.4f}" if r.threshold is not None else ""
        balanced = f"{r.balanced_accuracy:.4f}" if r.balanced_accuracy is not None else ""
        flips = f"{100 * r.flip_rate:.3f} %" if r.flip_rate is not None else ""
        status = f"{r.status}: {r.reason}" if r.reason and not r.passed else r.status
        status += f" ({r.note})" if r.note else ""
        mean, low, budget = _measured(r.mean, ".5f"), _measured(r.min, ".5f"), _measured(r.budget, "g")
        lines.append(f"| {r.model} | {r.file} | {r.size_kb:.1f} | {r.metric} | {mean} | {low} | "
                     f"{budget} | {psnr} | {threshold} | {balanced} | {flips} | {r.backend} | {status} |")
    return "\n".join(lines)


def _measured(value: float, spec: str) -> str:
    """A number for the table; blank where nothing was measured (a reference, a file the converter could not make)."""
    return "" if math.isnan(value) else format(value, spec)


def render_markdown(board: str, created: str, rows: list[ArtifactRow], calibration: dict, extra: dict) -> str:
    cal = calibration
    return "\n".join([
        f"# Compile report: {board}", "",
        f"Created {created}. Accuracy is measured by the edge backend that runs each file, on {cal['held_out']} "
        "held-out images the quantizer never saw, against the PyTorch FP32 model; an artifact below its "
        "board budget is rejected and left out of the bundle. ONNX detector files are measured the same way, as "
        "whole detectors on held-out photos against the packaged FP32 TFLite file: mean box IoU of the faces "
        "found again, with faces found, extra faces and key-point error beside the status.", "",
        render_table(rows), "",
        "## Calibration set", "",
        f"- folder: `{cal['root']}` ({cal['available']} image files)",
        f"- calibration images: {cal['images']} (seed {cal['seed']}), held out: {cal['held_out']}, "
        f"unreadable skipped: {cal['skipped_unreadable']}",
        f"- fingerprint: `{cal['fingerprint']}`",
        *[f"- {key}: {value}" for key, value in extra.items()], "",
    ])


def write_report(bundle_dir: Path, board: str, created: str, rows: list[ArtifactRow], calibration: dict,
                 extra: dict) -> Path:
    (bundle_dir / "report.json").write_text(json.dumps(
        {"board": board, "created": created, "calibration": calibration, **extra,
         "artifacts": [{**asdict(r), "status": r.status} for r in rows]}, indent=2) + "\n")
    path = bundle_dir / "report.md"
    path.write_text(render_markdown(board, created, rows, calibration, extra))
    return path
