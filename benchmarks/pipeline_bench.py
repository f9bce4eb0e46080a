"""End-to-end frames per second and per-stage latency of the whole pipeline on a frame source."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from benchmarks.environment import collect_environment
from benchmarks.results import new_result
from benchmarks.timing import elapsed_ms, summarize
from edge.errors import UserError
from edge.pipeline import STAGES, Pipeline
from edge.sources import open_source


@dataclass(frozen=True)
class PipelineOptions:
    bundle: Path
    source: str
    frames: int = 300            # a cap, so a live camera stops; a shorter file stops at its end
    warmup: int = 5              # first frames processed but not counted: they pay for lazy allocations
    gallery: Path | None = None
    backend: str | None = None
    threads: int | None = None


def run_pipeline(options: PipelineOptions) -> tuple[str, dict]:
    if options.frames < 1 or options.warmup < 0:
        raise UserError("--frames must be >= 1 and --warmup >= 0")
    pipe = Pipeline.from_bundle(options.bundle, gallery_path=options.gallery, backend=options.backend,
                                threads=options.threads)
    pipe.require_current_gallery(options.bundle)     # timing a match against part of the gallery would flatter it
    board, threads = pipe.board, pipe.threads
    stage_ms: dict[str, list[float]] = {stage: [] for stage in STAGES}
    frame_ms, faces = [], []
    try:
        with open_source(options.source) as source:
            frames = iter(source)
            for _ in range(options.warmup):
                frame = next(frames, None)
                if frame is None:
                    break
                pipe.process(frame.image)
            progress = tqdm(total=options.frames, desc="pipeline", unit="frame")
            started = time.perf_counter_ns()
            while len(frame_ms) < options.frames:
                frame_start = time.perf_counter_ns()
                frame = next(frames, None)   # reading and decoding count towards fps, as on a live camera
                if frame is None:
                    break
                result = pipe.process(frame.image)
                frame_ms.append(elapsed_ms(frame_start))
                for stage in STAGES:
                    stage_ms[stage].append(result.timings_ms.get(stage, 0.0))
                faces.append(len(result.decisions))
                progress.update()
            wall_s = elapsed_ms(started) / 1000.0
            progress.close()
        described = pipe.describe()
    finally:
        pipe.close()
    if not frame_ms:
        raise UserError(f"source {options.source} gave no frames after {options.warmup} warm-up frames; "
                        f"lower --warmup or use a longer source")
    result = new_result(
        "pipeline", collect_environment(board, threads), bundle=str(options.bundle), source=options.source,
        gallery=str(options.gallery) if options.gallery else None, pipeline=described,
        frames=len(frame_ms), warmup_frames=options.warmup, wall_s=wall_s, fps=len(frame_ms) / wall_s,
        faces_per_frame={"mean": float(np.mean(faces)), "max": int(np.max(faces)),
                         "frames_with_face": int(np.count_nonzero(faces))},
        frame_ms=frame_ms, frame_summary=summarize(frame_ms),
        stages={stage: {"timings_ms": values, "summary": summarize(values)} for stage, values in stage_ms.items()})
    return board, result
