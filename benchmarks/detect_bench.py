"""Detector recall by face size and precision against labelled boxes: the board's detection strategy over
each whole photo (every region it would scan in a stream), with the bundle's detectors."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.environment import collect_environment
from benchmarks.labelled_boxes import MAX_HEIGHT_RATIO, match_detections, parse_imglab
from benchmarks.latency import model_facts
from benchmarks.results import new_result
from benchmarks.timing import summarize
from edge.base.errors import UserError
from edge.base.imageio import read_image
from edge.base.progress import progress_bar
from edge.base.timing import elapsed_ms
from edge.faces.scan import build_strategy, load_detectors
from edge.runtime.backends.base import BackendOptions
from edge.runtime.board_profile import board_with_profile
from edge.runtime.manifest import read_manifest

SIZE_BINS = (0, 20, 40, 80, 160)        # labelled face height in pixels: <20, 20-40, 40-80, 80-160, >=160


@dataclass(frozen=True)
class DetectOptions:
    bundle: Path
    boxes: Path
    images: Path | None = None          # None: the folder of the boxes file
    threads: int | None = None
    backend: str | None = None          # None: the board's choice
    precision: str | None = None        # None: the board's choice


def size_bin(height: float) -> str:
    index = max(i for i, edge in enumerate(SIZE_BINS) if edge <= max(height, 0))
    low = SIZE_BINS[index]
    return f"{low}-{SIZE_BINS[index + 1]}" if index + 1 < len(SIZE_BINS) else f">={low}"


def run_detect(options: DetectOptions) -> tuple[str, dict]:
    labelled = parse_imglab(options.boxes)
    folder = options.images or options.boxes.parent
    missing = [item.file for item in labelled if not (folder / item.file).is_file()]
    if missing:
        raise UserError(f"{len(missing)} labelled images are not in {folder}: {', '.join(missing[:3])}")
    manifest = read_manifest(options.bundle)
    board, profile = board_with_profile(manifest.board)
    threads = options.threads or board.threads
    detectors = load_detectors(options.bundle, manifest, board, BackendOptions(threads), options.backend,
                               options.precision, profile)
    strategy = build_strategy(board.detection, detectors)
    heights, found_all, false, detections, times = [], [], 0, 0, []
    try:
        for item in progress_bar(labelled, desc="detect", unit="img"):
            image = read_image(folder / item.file)
            if image is None:
                raise UserError(f"labelled image {folder / item.file} cannot be decoded")
            start = time.perf_counter_ns()
            faces = strategy.detect_all(image)
            times.append(elapsed_ms(start))
            boxes = np.array([f.box for f in faces], np.float32).reshape(-1, 4)
            found, wrong = match_detections(item, boxes, np.array([f.score for f in faces]))
            heights += (item.boxes[:, 3] - item.boxes[:, 1]).tolist()
            found_all += found.tolist()
            false += wrong
            detections += len(faces)
    finally:
        for detector in detectors.values():
            detector.model.close()
    found_all, heights = np.asarray(found_all, bool), np.asarray(heights)
    by_size = {}
    for name in dict.fromkeys(size_bin(h) for h in sorted(heights)):
        members = np.array([size_bin(h) == name for h in heights])
        by_size[name] = {"faces": int(members.sum()), "found": int(found_all[members].sum())}
    large = heights >= 40
    result = new_result(
        "detect", collect_environment(board.name, threads, options.bundle), bundle=str(options.bundle),
        boxes=str(options.boxes),
        images=str(folder), strategy=board.detection.strategy,
        models=[model_facts(d.model.entry) for d in detectors.values()],
        backend="/".join(sorted({d.model.backend_name for d in detectors.values()})),
        match_rule=f"centre inside the labelled box, heights within {MAX_HEIGHT_RATIO}x",
        image_count=len(labelled), labelled_faces=int(len(heights)), found=int(found_all.sum()),
        recall=float(found_all.mean()) if len(heights) else None,
        recall_40px=float(found_all[large].mean()) if large.any() else None, faces_40px=int(large.sum()),
        recall_by_height=by_size, detections=detections, false_detections=false,
        precision=(detections - false) / detections if detections else None,
        detect_ms=times, detect_summary=summarize(times))
    return board.name, result
