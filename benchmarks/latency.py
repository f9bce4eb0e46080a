"""Latency of every model file in a bundle, on every backend that runs its format, at the batch the kiosk runs it
(one image; two for a verifier with mirror averaging, which embeds a face and its mirror image together)."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.environment import collect_environment
from benchmarks.results import new_result
from benchmarks.timing import summarize
from edge.base.errors import UserError
from edge.base.imageio import list_images, read_image
from edge.base.timing import time_interleaved
from edge.faces.align import Aligner
from edge.faces.detect import BlazeFaceDetector, build_detector, letterbox
from edge.generation.generate import Generator, takes_latent
from edge.runtime.backends import BACKEND_FORMATS, BACKENDS
from edge.runtime.backends.base import BackendOptions
from edge.runtime.board_profile import BoardProfile, board_with_profile
from edge.runtime.manifest import Manifest, ModelEntry, read_manifest
from edge.runtime.models import LoadedModel, choose_model, load_model, runnable_here
from edge.runtime.preprocess import prepare_batch, to_input_dtype

RANDOM_SEED = 0
MAX_IMAGES = 16          # distinct inputs cycled through the timing loop; more adds load time, not information


@dataclass(frozen=True)
class LatencyOptions:
    bundle: Path
    warmup: int | None = None     # None: the board config's benchmark counts
    repeat: int | None = None
    threads: int | None = None    # None: the board config's threads
    backend: str | None = None    # None: every backend that runs each file's format
    images: Path | None = None    # None: a seeded random image


def model_facts(entry: ModelEntry) -> dict:
    return {"name": entry.name, "task": entry.task, "architecture": entry.architecture, "file": entry.file,
            "format": entry.format, "precision": entry.precision, "sha256": entry.sha256,
            "input_shape": list(entry.input.shape)}


def runs_for(manifest: Manifest, backend: str | None) -> list[tuple[ModelEntry, str]]:
    """(entry, backend) for every model file and every backend installed here that runs its format (a backend
    asked for by name is tried even when missing, so its absence is said)."""
    if backend is not None:
        BACKENDS.target(backend)  # an unknown name fails with the valid ones
    runs = [(entry, name) for entry in manifest.models for name, formats in BACKEND_FORMATS.items()
            if entry.format in formats and (name == backend or (backend is None and runnable_here(name)))]
    if not runs:
        have = ", ".join(sorted({e.format for e in manifest.models}))
        raise UserError(f"backend {backend} runs none of the bundle's formats ({have})")
    return runs


def board_defaults(manifest: Manifest, board, profile: BoardProfile | None) -> set[tuple[str, str]]:
    """(entry name, backend) that the runtime would choose on this board for each task in the bundle."""
    chosen = set()
    for task in sorted({e.task for e in manifest.models}):
        choice = choose_model(manifest, board, task, profile=profile)
        chosen.add((choice.entry.name, choice.backend))
    return chosen


def latent_batches(entry: ModelEntry, count: int = 8) -> tuple[list[np.ndarray], str]:
    """A decoder's inputs: latents drawn from the prior compile recorded (edge.generation.generate.Prior)."""
    rows = Generator.prior_of(entry).draw(count, np.random.default_rng(RANDOM_SEED))
    return [to_input_dtype(rows[i:i + 1], entry.input) for i in range(count)], \
        f"{count} latents from its prior (seed {RANDOM_SEED})"


def random_batches(entry: ModelEntry) -> tuple[list[np.ndarray], str]:
    height, width = entry.input.size
    image = np.random.default_rng(RANDOM_SEED).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return [prepare_batch([image], entry.input)], f"random uint8 image (seed {RANDOM_SEED})"


def image_batches(entry: ModelEntry, images: list[np.ndarray], detector: BlazeFaceDetector | None,
                  folder: Path) -> tuple[list[np.ndarray], str]:
    """Real inputs cropped as the model expects: letterboxed frames for a detector, aligned faces otherwise."""
    if entry.input.crop == "letterbox":
        crops = [letterbox(image, entry.input.size[0])[0] for image in images]
    else:
        if detector is None:
            raise UserError(f"--images needs a detect model in the bundle to align faces for {entry.name}")
        aligner = Aligner(entry.input.crop, detector.keypoint_names)
        chips = (aligner.align_chosen(image, detector.detect(image)) for image in images)
        crops = [chip for chip in chips if chip is not None]
        if not crops:
            raise UserError(f"no face found in the first {len(images)} images of {folder}; "
                            f"give a folder of face photos")
    return [prepare_batch([crop], entry.input) for crop in crops], f"{len(crops)} images from {folder}"


def load_images(folder: Path) -> list[np.ndarray]:
    images = [img for img in (read_image(p) for p in list_images(folder)[:MAX_IMAGES]) if img is not None]
    if not images:
        raise UserError(f"{folder} holds no readable images")
    return images


def fp32_comparisons(results: list[dict]) -> None:
    """Adds ``vs_fp32`` to each result: its speed against the FP32 file of the same model and backend."""
    for result in results:
        model = result["model"]
        # the same role: a decoder is compared with its own FP32 file, not its autoencoder's reconstructing graph
        reference = next((r for r in results if r["backend"] == result["backend"]
                          and r["model"]["precision"] == "fp32" and r["model"]["task"] == model["task"]
                          and r["model"]["name"].rsplit(".", 2)[0] == model["name"].rsplit(".", 2)[0]), None)
        if reference is None or reference is result:
            result["vs_fp32"] = None
            continue
        result["vs_fp32"] = {
            "reference": reference["model"]["name"],
            "speedup_p50": reference["summary"]["p50"] / result["summary"]["p50"],
            "speedup_mean": reference["summary"]["mean"] / result["summary"]["mean"],
        }


def run_latency(options: LatencyOptions) -> tuple[str, list[dict]]:
    """Times every (model, backend) of the bundle interleaved; returns the board name and one result each."""
    manifest = read_manifest(options.bundle)
    board, profile = board_with_profile(manifest.board)
    warmup = board.benchmark.warmup if options.warmup is None else options.warmup
    repeat = board.benchmark.repeat if options.repeat is None else options.repeat
    threads = board.threads if options.threads is None else options.threads
    if warmup < 0 or repeat < 1 or threads < 1:
        raise UserError("--warmup must be >= 0, --repeat and --threads >= 1")
    runs = runs_for(manifest, options.backend)
    images = load_images(options.images) if options.images else None
    loaded: list[LoadedModel] = []
    try:
        detector = None
        load_options = BackendOptions(threads=threads)
        if images is not None and manifest.for_task("detect"):
            chosen = choose_model(manifest, board, "detect", profile=profile)
            loaded.append(load_model(options.bundle, chosen.entry, chosen.backend, load_options))
            detector = build_detector(loaded[-1])
        calls, prepared = {}, {}
        for entry, backend in runs:
            model = load_model(options.bundle, entry, backend, load_options)
            loaded.append(model)
            if takes_latent(entry):
                batches, description = latent_batches(entry)
            elif images is not None:
                batches, description = image_batches(entry, images, detector, options.images)
            else:
                batches, description = random_batches(entry)
            key = f"{entry.name}/{backend}"
            batch = entry.images_per_face
            batches = [np.concatenate([b] * batch) for b in batches]
            next_batch = itertools.cycle(batches).__next__
            calls[key] = lambda model=model, next_batch=next_batch: model.infer_image_batch(next_batch())
            prepared[key] = (entry, backend, model.backend.describe(), description, batch)
        times = time_interleaved(calls, warmup, repeat, desc=f"latency x{len(calls)} models")
    finally:
        for model in loaded:
            model.close()
    environment = collect_environment(manifest.board, threads, options.bundle)
    defaults = board_defaults(manifest, board, profile)
    results = []
    for key, (entry, backend, described, description, batch) in prepared.items():
        results.append(new_result(
            "latency", environment, bundle=str(options.bundle), model=model_facts(entry), backend=backend,
            board_default=(entry.name, backend) in defaults,
            runtime=described, batch=batch, input=description, warmup=warmup, repeat=repeat, schedule="interleaved",
            timings_ms=times[key], summary=summarize(times[key])))
    fp32_comparisons(results)
    results += skipped_rows(manifest, board, options.backend, environment, str(options.bundle))
    return manifest.board, results


def skipped_rows(manifest: Manifest, board, backend: str | None, environment: dict, bundle: str) -> list[dict]:
    """A result per file and board backend that cannot run on this machine (TensorRT on a laptop), saying why,
    so the report shows what was not measured rather than leaving it out."""
    if backend is not None:
        return []
    return [new_result("latency", environment, bundle=bundle, model=model_facts(entry), backend=name,
                       board_default=False, runtime={}, batch=entry.images_per_face, input="-", warmup=0, repeat=0,
                       schedule="skipped", timings_ms=[], summary=summarize([]), vs_fp32=None,
                       skipped=f"{name} does not run on this machine (it runs on the board: python -m benchmarks "
                               "latency there)")
            for entry in manifest.models for name in board.backends
            if entry.format in BACKEND_FORMATS.get(name, ()) and not runnable_here(name)]
