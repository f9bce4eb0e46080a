"""Golden outputs: what every model file of a bundle must produce, checked where the bundle runs.

Compile gates each file against the PyTorch FP32 model on the machine that compiles (``gate``), then stores a
few of those held-out face crops with their FP32 outputs, and a frame of faces with the boxes each detector
found in it, as ``golden.npz`` in the bundle. ``check_bundle`` runs every file again on this machine, with the
backend the board config picks and the crops through the runtime's own preprocessing, and applies the budget
and floor that file passed at compile time: a board whose runtime computes something else (another delegate,
a broken FP16 path, a different resize) is caught before a person stands at its door.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.base.errors import UserError
from edge.base.metrics import cosine_similarity, psnr, ssim
from edge.faces.detect import box_iou, build_detector
from edge.liveness.texture import live_probability
from edge.runtime.backends.base import BackendOptions
from edge.runtime.boards import BoardConfig, load_board
from edge.runtime.manifest import Manifest, ModelEntry, read_manifest
from edge.runtime.models import backend_here, backend_on_board, load_model
from edge.runtime.preprocess import prepare_batch, to_input_dtype

GOLDEN_FILE = "golden.npz"
GOLDEN_IMAGES = 16        # held-out crops kept per model: 1 MB of 150x150 faces
FRAME_CELLS = (2, 2)      # the detectors' frame: 4 crops in 2 rows of 2 on a grey canvas (faces large enough
                          # for the short-range model at its 128x128 input)
BOX_IOU = 0.9             # a detector's box on this machine against the compiling machine's
SCORE_DELTA = 0.05
# A generator file may lose at most this much of the FP32 model's held-out reconstruction quality (mean PSNR in dB
# and mean SSIM of its outputs against their inputs), by precision.
GENERATOR_DROP = {"fp32": (0.05, 0.001), "fp16": (0.2, 0.005), "int8": (1.0, 0.02)}


def compare(task: str, reference: np.ndarray, candidate: np.ndarray) -> dict:
    """Per-image agreement; verify: embedding cosine; liveness: one minus the difference in live probability (the
    logits' cosine barely moves with it); generate: cosine of mean-centred images (a plain cosine of [0, 1] images
    is near 1 for almost any output) and PSNR for information."""
    if task == "verify":
        scores = cosine_similarity(reference, candidate)
        result = {"metric": "cosine"}
    elif task == "liveness":
        scores = 1.0 - np.abs(live_probability(reference) - live_probability(candidate))
        result = {"metric": "live_probability_agreement"}
    else:
        scores = cosine_similarity(reference - 0.5, candidate - 0.5)
        # identical outputs have infinite PSNR; cap at 120 dB so the mean stays a number
        db = [min(psnr(r, c), 120.0) for r, c in zip(reference, candidate)]
        result = {"metric": "cosine_centred", "psnr_db_mean": round(float(np.mean(db)), 2)}
    return {**result, "mean": float(scores.mean()), "min": float(scores.min()), "images": len(scores)}


def gate(task: str, reference: np.ndarray, candidate: np.ndarray, budget: float, backend: str,
         floor: float | None = None, reference_name: str = "torch-fp32", inputs: np.ndarray | None = None,
         precision: str = "fp32") -> dict:
    """The manifest's accuracy record: ``passed`` needs the mean at the board's budget and, with a ``floor``,
    every single image at or above it (a mean can hide a few faces the quantized file gets badly wrong); a
    generator given its ``inputs`` must also keep its reconstructions' PSNR and SSIM within GENERATOR_DROP."""
    measured = compare(task, reference, candidate)
    passed = measured["mean"] >= budget and (floor is None or measured["min"] >= floor)
    reason = "" if passed else (f"{measured['metric']} mean {measured['mean']:.5f} (budget {budget}), "
                                f"min {measured['min']:.5f} (floor {floor})")
    if task == "generate" and inputs is not None:
        drops = reconstruction_drop(inputs, reference, candidate)
        max_db, max_ssim = GENERATOR_DROP[precision]
        measured.update(drops, max_psnr_drop_db=max_db, max_ssim_drop=max_ssim)
        if drops["psnr_drop_db"] > max_db or drops["ssim_drop"] > max_ssim:
            passed = False
            reason = "; ".join(filter(None, [reason, f"held-out PSNR drops {drops['psnr_drop_db']:.3f} dB (at most "
                                                     f"{max_db}), SSIM {drops['ssim_drop']:.4f} (at most {max_ssim})"]))
    return {"reference": reference_name, **measured, "budget": budget, "floor": floor, "passed": passed,
            "reason": reason, "backend": backend}


def reconstruction_drop(inputs: np.ndarray, reference: np.ndarray, candidate: np.ndarray) -> dict:
    """How much worse the file reconstructs its held-out inputs than the FP32 model: mean PSNR (dB) and SSIM."""
    def quality(outputs):
        return (np.mean([min(psnr(x, y), 120.0) for x, y in zip(inputs, outputs)]),
                np.mean([ssim(x, y) for x, y in zip(inputs, outputs)]))

    (psnr_fp32, ssim_fp32), (psnr_file, ssim_file) = quality(reference), quality(candidate)
    return {"psnr_db_fp32": round(float(psnr_fp32), 3), "psnr_db_file": round(float(psnr_file), 3),
            "psnr_drop_db": round(float(psnr_fp32 - psnr_file), 4), "ssim_fp32": round(float(ssim_fp32), 4),
            "ssim_file": round(float(ssim_file), 4), "ssim_drop": round(float(ssim_fp32 - ssim_file), 5)}


def run_artifact(bundle_dir: Path, entry: ModelEntry, batch: np.ndarray, backend: str, threads: int) -> np.ndarray:
    """The file's first output for every image of ``batch`` (prepared), one image per call as the runtime runs
    it."""
    loaded = load_model(bundle_dir, entry, backend, BackendOptions(threads=threads))
    output = entry.outputs[0].name
    try:
        outputs = [loaded.infer_image_batch(batch[i:i + 1])[output] for i in range(len(batch))]
    finally:
        loaded.close()
    return np.concatenate(outputs)


def model_role(entry: ModelEntry) -> str:
    """``verifier.onnx.int8`` -> ``verifier``: the model a compiled file was made from."""
    return entry.name.rsplit(".", 2)[0]


def golden_frame(crops: list[np.ndarray]) -> np.ndarray:
    """The first face crops laid out on a grey canvas, a margin around each: the detectors' golden input."""
    rows, cols = FRAME_CELLS
    side = max(max(c.shape[:2]) for c in crops)
    cell = side + side // 4
    frame = np.full((rows * cell, cols * cell, 3), 127, np.uint8)
    for index, crop in enumerate(crops[:rows * cols]):
        row, col = divmod(index, cols)
        y, x = row * cell + (cell - crop.shape[0]) // 2, col * cell + (cell - crop.shape[1]) // 2
        frame[y:y + crop.shape[0], x:x + crop.shape[1]] = crop
    return frame


def detections(bundle_dir: Path, entry: ModelEntry, frame: np.ndarray, backend: str, threads: int) -> np.ndarray:
    """(N, 5) boxes and scores of one detector file on the frame."""
    model = load_model(bundle_dir, entry, backend, BackendOptions(threads=threads))
    try:
        found = build_detector(model).detect(frame)
    finally:
        model.close()
    return np.array([[*d.box, d.score] for d in found], np.float32).reshape(-1, 5)


def write_golden(bundle_dir: Path, manifest_models: list[ModelEntry], samples: dict[str, dict[str, np.ndarray]],
                 board: BoardConfig, threads: int) -> Path:
    """``golden.npz``: per model role its crops (uint8), or a latent decoder's inputs (and reconstruction targets),
    and the FP32 outputs (``reference``); the frame and each detector's boxes on it, found here (with the board's
    runtime where it runs here). Roles whose every file failed its gate are left out."""
    roles = {model_role(e) for e in manifest_models if e.task != "detect"}
    arrays = {f"{role}.{kind}": array[:GOLDEN_IMAGES] for role in sorted(roles & set(samples))
              for kind, array in samples[role].items()}
    crops = [kept["crops"] for kept in samples.values() if "crops" in kept]
    detectors = [e for e in manifest_models if e.task == "detect"]
    if detectors and crops:
        frame = golden_frame(list(crops[0]))
        arrays["frame"] = frame
        for entry in detectors:
            backend, _ = backend_here(entry, board)
            arrays[f"{entry.name}.boxes"] = detections(bundle_dir, entry, frame, backend, threads)
    path = bundle_dir / GOLDEN_FILE
    np.savez_compressed(path, **arrays)
    return path


@dataclass(frozen=True)
class GoldenCheck:
    file: str
    precision: str
    backend: str
    measure: str          # "cosine mean 0.99991, min 0.99950" or "8 of 8 boxes within IoU 0.9"
    passed: bool
    reason: str
    skipped: bool = False     # no runtime on this machine runs the file (only with runtimes_here)


def check_folder(bundle_dir: Path, threads: int | None = None, runtimes_here: bool = False) -> list[GoldenCheck]:
    """``check_bundle`` for a bundle folder, run as the board it was compiled for runs it."""
    manifest = read_manifest(bundle_dir)
    board = load_board(manifest.board)
    return check_bundle(Path(bundle_dir), manifest, board, threads or board.threads, runtimes_here)


def check_bundle(bundle_dir: Path, manifest: Manifest, board: BoardConfig, threads: int,
                 runtimes_here: bool = False) -> list[GoldenCheck]:
    """Every model file of the bundle against its golden outputs, run on this machine as ``board`` runs it; with
    ``runtimes_here``, each on the board's runtime when this machine has it, else on the next in the board's order
    that runs here (a Jetson bundle's ONNX files on an arm64 machine without TensorRT), and a file no runtime here
    runs is skipped."""
    path = Path(bundle_dir) / GOLDEN_FILE
    if not path.is_file():
        raise UserError(f"{bundle_dir} has no {GOLDEN_FILE} (compiled before golden outputs existed?): recompile "
                        f"it with python -m compile --target {manifest.board}")
    try:
        with np.load(path) as stored:
            golden = {name: stored[name] for name in stored.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:     # a truncated or damaged file
        raise UserError(f"{path} cannot be read ({err}): copy the bundle again or recompile it") from None
    checks = []
    for entry in manifest.models:
        stored = f"{entry.name}.boxes" if entry.task == "detect" else f"{model_role(entry)}.reference"
        if stored not in golden:
            continue
        try:
            backend = backend_here(entry, board)[0] if runtimes_here else backend_on_board(entry, board)
        except UserError as err:                 # only with runtimes_here: nothing here runs this file
            checks.append(GoldenCheck(entry.file, entry.precision, "-", "", False, str(err), skipped=True))
            continue
        check = _check_detector if entry.task == "detect" else _check_model
        checks.append(check(bundle_dir, entry, golden, backend, threads))
    return checks


def _check_model(bundle_dir: Path, entry: ModelEntry, golden: dict, backend: str, threads: int) -> GoldenCheck:
    role = model_role(entry)
    if f"{role}.crops" in golden:
        batch = prepare_batch(list(golden[f"{role}.crops"]), entry.input)
        targets = batch
    else:                                   # a latent decoder: its inputs as stored, its targets where it has some
        batch = to_input_dtype(golden[f"{role}.inputs"], entry.input)
        targets = golden.get(f"{role}.targets")
    candidate = run_artifact(bundle_dir, entry, batch, backend, threads)
    accuracy = entry.accuracy or {}
    budget, floor = accuracy.get("budget", 0.999), accuracy.get("floor")
    result = gate(entry.task, golden[f"{role}.reference"], candidate, budget, backend, floor, inputs=targets,
                  precision=entry.precision)
    measure = f"{result['metric']} mean {result['mean']:.5f}, min {result['min']:.5f}"
    return GoldenCheck(entry.file, entry.precision, backend, measure, result["passed"], result["reason"])


def _check_detector(bundle_dir: Path, entry: ModelEntry, golden: dict, backend: str, threads: int) -> GoldenCheck:
    expected = golden[f"{entry.name}.boxes"]
    found = detections(bundle_dir, entry, golden["frame"], backend, threads)
    matched = 0
    for box in expected:
        if len(found):
            overlap = box_iou(box[:4], found[:, :4])
            best = int(np.argmax(overlap))
            matched += bool(overlap[best] >= BOX_IOU and abs(found[best, 4] - box[4]) <= SCORE_DELTA)
    passed = matched == len(expected) == len(found)
    measure = f"{matched} of {len(expected)} boxes within IoU {BOX_IOU}, {len(found)} found"
    reason = "" if passed else f"expected {len(expected)} faces as found at compile time; {measure}"
    return GoldenCheck(entry.file, entry.precision, backend, measure, passed, reason)
