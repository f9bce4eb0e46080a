"""Assembling one board's bundle: export every artifact, gate it, write manifest and report, swap it in place.

Functions here take models as (nn.Module, InputSpec, ...) through SourceModel, so they work on any module;
only the CLI reads checkpoints. The bundle is built in a staging folder next to its final place and swapped in
once its manifest validates, so a failed or interrupted compile never leaves a half-written bundle behind.
"""
from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch

from compile import exporters
from compile.calibration import CalibrationSet
from compile.cohort import write_cohort
from compile.detectors import DetectorPhotos, compile_detectors, describe_detector_files
from compile.exporters import ExportedFile, ExportFailed, ExportRequest
from compile.match_calibration import (
    FLIP_BUDGET,
    TORCH_BATCH,
    MatchOptions,
    artifact_vectors,
    flip_rate,
    measure,
)
from compile.real_pairs import PairFaces
from compile.report import ArtifactRow, write_report
from compile.texture import TextureCalibration, calibrate_texture
from compile.validate import torch_reference
from edge.base.errors import UserError
from edge.base.interrupts import make_folder
from edge.base.progress import progress_bar
from edge.bundles.golden import GOLDEN_FILE, GOLDEN_IMAGES, gate, run_artifact, write_golden
from edge.bundles.signing import sign_bundle
from edge.faces.score_norm import ScoreNorm
from edge.runtime.board_profile import read_profile
from edge.runtime.boards import Artifact, BoardConfig
from edge.runtime.crops import CROPS
from edge.runtime.manifest import (
    InputSpec,
    Manifest,
    ModelEntry,
    OutputSpec,
    read_manifest,
    sha256_file,
    write_manifest,
)
from edge.runtime.models import backend_here, backend_on_board, default_precisions
from edge.runtime.preprocess import prepare_batch, to_input_dtype
from trainer.evaluate import embed

OUTPUTS = {  # task -> (output name, meaning)
    "verify": ("embedding", "embedding (L2-normalise before cosine similarity)"),
    "generate": ("image", "image laid out and normalised like the input (edge.runtime.preprocess.output_to_images)"),
    "liveness": ("logits", "class logits; softmax class 1 is a live face (edge.liveness.texture.live_probability)"),
}


@dataclass(frozen=True)
class SourceModel:
    """A trained model to compile, with the facts the manifest needs from its checkpoint."""

    role: str                         # names its files and entries: "verifier" -> verifier.int8.onnx
    task: str                         # verify | generate | liveness
    architecture: str
    model: torch.nn.Module
    spec: InputSpec
    sha256: str                       # of the checkpoint file
    threshold: float | None = None
    metrics: dict = field(default_factory=dict)
    created: str = ""
    config: dict = field(default_factory=dict)        # the architecture's config (a pruned checkpoint keeps it)
    passes: dict = field(default_factory=dict)        # what compile did to it before export: {"pruning": {...}}
    # images -> (model inputs, reconstruction targets or None) for a model whose input is not the image itself
    # (a latent decoder: compile.decoders); None: the images through the spec's preprocessing, both ways
    feeds: Callable[[list[np.ndarray], str], tuple[np.ndarray, np.ndarray | None]] | None = None
    artifacts: tuple[Artifact, ...] | None = None     # the files to make of it; None: the bundle's list

    def inputs(self, images: list[np.ndarray], purpose: str) -> tuple[np.ndarray, np.ndarray | None]:
        """(the model's input batch, what a generator should reproduce) for ``purpose``: calibration or held_out."""
        if self.feeds is not None:
            return self.feeds(images, purpose)
        batch = prepare_batch(images, self.spec)
        return batch, batch

    @property
    def takes_images(self) -> bool:
        return self.feeds is None


@dataclass(frozen=True)
class BuildResult:
    bundle_dir: Path
    manifest: Manifest
    rows: list[ArtifactRow]

    @property
    def rejected(self) -> list[ArtifactRow]:
        return [r for r in self.rows if not r.passed]


def build_bundle(board: BoardConfig, artifacts: list[Artifact], sources: list[SourceModel],
                 calibration: CalibrationSet, out: Path, detectors: list[str],
                 calibration_method: str = "minmax", pair_faces: dict[str, PairFaces] | None = None,
                 match_options: MatchOptions = MatchOptions(), notes: dict | None = None,
                 detector_artifacts: list[Artifact] | None = None,
                 detector_photos: DetectorPhotos | None = None, sign: Path | None = None,
                 texture: TextureCalibration | None = None) -> BuildResult:
    """``detector_artifacts``: the board's own unless given; ONNX ones need ``detector_photos``; ``sign``: the key
    that signs the finished bundle (edge.bundles.signing), before it is swapped in; ``texture``: the live faces
    that set a liveness source's thresholds (compile.texture)."""
    detector_artifacts = board.detector_artifact_list() if detector_artifacts is None else detector_artifacts
    make_folder(out)
    final = out / board.name
    staging = Path(tempfile.mkdtemp(prefix=f".{board.name}.staging-", dir=out))
    staging.chmod(0o755)  # mkdtemp makes it private; the bundle is meant to be copied and read by others
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    try:
        entries: list[ModelEntry] = []
        rows: list[ArtifactRow] = []
        with tempfile.TemporaryDirectory(prefix="compile-work-") as workdir:
            # The held-out inputs and the torch FP32 outputs every artifact of a model is gated against:
            # computed once per model, not once per artifact.
            references = {source.role: _reference(source, calibration) for source in sources}
            progress = progress_bar(total=sum(len(s.artifacts or artifacts) for s in sources), desc="artifacts",
                                    unit="file")
            for source in sources:
                compiled = []
                for artifact in source.artifacts or artifacts:
                    compiled.append(_compile_one(board, source, artifact, calibration, calibration_method, staging,
                                                 Path(workdir), references[source.role]))
                    progress.update()
                rows += [row for entry, row in compiled if entry is None]      # the converter could not make it
                compiled = [(entry, row) for entry, row in compiled if entry is not None]
                faces = (pair_faces or {}).get(source.spec.crop)
                if source.task == "verify" and faces is not None:
                    compiled = calibrate_verifier(source, compiled, faces, staging, board, match_options)
                if source.task == "liveness" and texture is not None:
                    compiled = calibrate_texture(source, compiled, texture, staging, board, gate_threads(board))
                for entry, row in compiled:
                    rows.append(row)
                    if row.passed:
                        entries.append(entry)
                    elif (staging / entry.file).exists():
                        (staging / entry.file).unlink()
            progress.close()
            found, detector_rows = compile_detectors(board, detectors, detector_artifacts, detector_photos, staging,
                                                     Path(workdir), calibration_method, gate_threads(board))
            entries, rows = entries + found, rows + detector_rows
        if "tensorrt" in board.backends:
            entries = [with_engine_recipe(e) for e in entries]
        write_golden(staging, entries,
                     {s.role: golden_samples(s, calibration, references[s.role]) for s in sources}, board,
                     gate_threads(board))
        manifest = Manifest(board=board.name, created=created, tools=tool_versions(artifacts), models=tuple(entries))
        write_manifest(staging, manifest)
        write_report(staging, board.name, created, rows, calibration.describe(),
                     {"artifacts requested": ", ".join(map(str, artifacts)),
                      "verifier thresholds": _threshold_note(sources, pair_faces, match_options),
                      **({"texture thresholds": texture.describe()} if texture is not None else {}),
                      "int8 quantization": f"onnxruntime static, {calibration_method} calibration, QDQ, "
                                           f"per-channel int8 weights, {activation_note(board)}",
                      "runtime default precision per task": _default_precisions(board),
                      "detector files": describe_detector_files(detector_artifacts, detector_photos),
                      "golden outputs": f"{GOLDEN_FILE}: {GOLDEN_IMAGES} held-out crops per model with their FP32 "
                                        "outputs and a frame of faces with each detector's boxes; check them on "
                                        "the board with python -m edge bundle check DIR",
                      **(notes or {})})
        read_manifest(staging, verify_files=True)
        if sign is not None:
            sign_bundle(staging, sign)
        _swap_into_place(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BuildResult(final, manifest, rows)


def activation_note(board: BoardConfig) -> str:
    if board.int8_activations == "auto":
        return ("uint8 and int8 activations both timed here and the faster kept (each INT8 file's "
                "extra.activations_measured_ms; the board config's int8_activations: auto)")
    return f"{board.int8_activations} activations (the board config's int8_activations)"


def _threshold_note(sources: list[SourceModel], pair_faces: dict[str, PairFaces] | None,
                    options: MatchOptions) -> str:
    if not any(s.task == "verify" for s in sources):
        return "no verifier"
    if not pair_faces:
        return ("no real pairs were given (--pairs_images): each verifier keeps its checkpoint's threshold and its "
                "INT8 file is gated on the calibration images alone (cosine to FP32), not on pair decisions")
    faces = "; ".join(f.describe() for f in pair_faces.values())
    cohorts = sorted({f.cohort.source for f in pair_faces.values() if f.cohort is not None})
    scores = (f"S-norm scores against each file's cohort of faces nobody enrolls ({'; '.join(cohorts)}, shipped as "
              f"templates)" if cohorts else "cosine scores")
    return (f"each file's own, on {scores}, at {options.target_far:g} false accepts per probe, placed on every "
            f"impostor pair of the calibration identities and reported on the others ({faces}); mirror averaging "
            f"{'on' if options.mirror_average else 'off'}; decisions may flip on at most {100 * FLIP_BUDGET} % of "
            f"real pairs against FP32; the FP32 model's real-pair AUC must reach {options.min_auc}")


def _reference(source: SourceModel, calibration: CalibrationSet) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(held-out inputs, reconstruction targets, the PyTorch FP32 outputs)."""
    check_crop_size(calibration, source)
    held_out, targets = source.inputs(calibration.held_out, "held_out")
    return held_out, targets, torch_reference(source.model, held_out)


def golden_samples(source: SourceModel, calibration: CalibrationSet, reference) -> dict[str, np.ndarray]:
    """What golden.npz keeps of a model: its held-out crops, or for a latent decoder its inputs and targets; and the
    FP32 outputs."""
    held_out, targets, outputs = reference
    kept = ({"crops": np.stack(calibration.held_out[:GOLDEN_IMAGES])} if source.takes_images else
            {"inputs": held_out[:GOLDEN_IMAGES], **({"targets": targets[:GOLDEN_IMAGES]} if targets is not None
                                                    else {})})
    return {**kept, "reference": outputs[:GOLDEN_IMAGES]}


def check_crop_size(calibration: CalibrationSet, source: SourceModel) -> None:
    """Calibration crops must be cut like the model's input: a resized crop of another template would place
    the face elsewhere and calibrate ranges the model never sees."""
    if source.spec.crop not in CROPS:
        return
    side = CROPS[source.spec.crop].size              # the model may then resize it (the generators take 64x64)
    sizes = {img.shape[:2] for img in calibration.images + calibration.held_out}
    if sizes != {(side, side)}:
        found = ", ".join(f"{w}x{h}" for h, w in sorted(sizes))
        raise UserError(f"{source.role} expects {source.spec.crop} crops of {side}x{side}; the calibration images "
                        f"in {calibration.root} are {found}: make them with python -m edge align --crop "
                        f"{source.spec.crop}")


def _compile_one(board: BoardConfig, source: SourceModel, artifact: Artifact, calibration: CalibrationSet,
                 calibration_method: str, staging: Path, workdir: Path,
                 reference: tuple[np.ndarray, np.ndarray | None, np.ndarray]
                 ) -> tuple[ModelEntry | None, ArtifactRow]:
    """Exports one artifact and measures it; a file that fails its gate is deleted from the bundle, one that the
    converter cannot make comes back as a rejected row without an entry."""
    output_name, _ = OUTPUTS[source.task]
    path = staging / f"{source.role}.{artifact.precision}.{artifact.format}"
    needs_calibration = artifact.precision == "int8"
    request = ExportRequest(
        model=source.model.eval(), spec=source.spec, output_name=output_name, path=path, workdir=workdir,
        opset=board.onnx_opset,
        calibration=source.inputs(calibration.images, "calibration")[0] if needs_calibration else None,
        calibration_method=calibration_method, int8_activations=board.int8_activations,
    )
    try:
        exported = exporters.export(artifact, request)
    except ExportFailed as err:
        return None, ArtifactRow(model=f"{source.role}.{artifact.format}.{artifact.precision}", file=path.name,
                                 size_kb=0.0, metric="-", mean=float("nan"), min=float("nan"),
                                 budget=board.accuracy_budget[artifact.precision], passed=False, backend="-",
                                 reason=str(err))
    held_out, targets, outputs = reference
    entry = make_entry(source, artifact, exported, outputs.shape[1:],
                       _calibration_record(calibration, exported) if needs_calibration else None)
    # The file gets its inputs as its own entry says: a full-integer file takes them quantized, with its scale
    batch = (prepare_batch(calibration.held_out, entry.input) if source.takes_images
             else to_input_dtype(held_out, entry.input))
    backend, note = backend_here(entry, board)
    candidate = run_artifact(staging, entry, batch, backend, gate_threads(board))
    accuracy = gate(source.task, outputs, candidate, board.accuracy_budget[artifact.precision], backend,
                    board.accuracy_floor.get(artifact.precision), inputs=targets, precision=artifact.precision)
    accuracy["board_backend"] = backend_on_board(entry, board)
    entry = dataclasses.replace(entry, accuracy=accuracy)
    row = ArtifactRow(model=entry.name, file=entry.file, size_kb=path.stat().st_size / 1024,
                      metric=accuracy["metric"], mean=accuracy["mean"], min=accuracy["min"],
                      budget=accuracy["budget"], passed=accuracy["passed"], backend=backend,
                      psnr_db=accuracy.get("psnr_db_mean"), reason=accuracy["reason"], note=note)
    return entry, row


def gate_threads(board: BoardConfig) -> int:
    return max(1, min(board.threads, os.cpu_count() or 1))


def calibrate_verifier(source: SourceModel, compiled: list[tuple[ModelEntry, ArtifactRow]], faces: PairFaces,
                       staging: Path, board: BoardConfig,
                       options: MatchOptions) -> list[tuple[ModelEntry, ArtifactRow]]:
    """Real-pair threshold, AUC floor, decision flips and gallery compatibility for one verifier's files."""
    mirror, cohort = options.mirror_average, faces.cohort
    reference_norm = (ScoreNorm(embed(source.model, cohort.chips, source.spec, TORCH_BATCH, mirror=mirror))
                      if cohort is not None else None)
    reference = measure(embed(source.model, faces.chips, source.spec, TORCH_BATCH, mirror=mirror), faces, options,
                        reference_norm)
    collapsed = reference.auc < options.min_auc
    measured = {}
    for entry, row in compiled:
        if row.passed and not collapsed:
            vectors = artifact_vectors(staging, entry, faces.chips, board, gate_threads(board), mirror)
            norm = (ScoreNorm(artifact_vectors(staging, entry, cohort.chips, board, gate_threads(board), mirror))
                    if cohort is not None else None)
            measured[entry.name] = measure(vectors, faces, options, norm)
    result = []
    for entry, row in compiled:
        if collapsed:
            reason = (f"the FP32 model's AUC on real pairs is {reference.auc:.3f}, under the floor {options.min_auc}: "
                      f"it does not separate real people (untrained or collapsed?)")
            result.append((entry, dataclasses.replace(row, passed=False, reason=row.reason or reason)))
            continue
        if entry.name not in measured:
            result.append((entry, row))
            continue
        mine = measured[entry.name]
        flips = flip_rate(faces, reference, mine)
        compatible = tuple(other.kind for other, _ in compiled if other.name in measured and other.name != entry.name
                           and flip_rate(faces, mine, mine, templates=measured[other.name].vectors) <= FLIP_BUDGET)
        passed = flips <= FLIP_BUDGET
        accuracy = {**entry.accuracy, "real_pairs": {"flip_rate": flips, "flip_budget": FLIP_BUDGET,
                                                     "fp32_auc": reference.auc, "fp32_auc_floor": options.min_auc}}
        match = (dataclasses.replace(mine.match, cohort=write_cohort(staging, entry, mine.norm, cohort))
                 if passed and cohort is not None else mine.match)
        entry = dataclasses.replace(entry, threshold=mine.match.threshold, match=match,
                                    compatible_with=compatible, accuracy=accuracy)
        reason = "" if passed else f"{100 * flips:.2f} % of real pair decisions flip (budget {100 * FLIP_BUDGET} %)"
        result.append((entry, dataclasses.replace(
            row, passed=passed, reason=reason, threshold=mine.match.threshold, flip_rate=flips,
            balanced_accuracy=mine.match.report["balanced_accuracy"])))
    return result


def make_entry(source: SourceModel, artifact: Artifact, exported: ExportedFile, output_shape: tuple[int, ...],
               calibration: dict | None) -> ModelEntry:
    """The manifest entry: the checkpoint's preprocessing with the file's own input name, shape and layout."""
    _, meaning = OUTPUTS[source.task]
    scale, zero_point = exported.input_quantization or (None, None)
    spec = dataclasses.replace(source.spec, name=exported.input_name, shape=exported.input_shape,
                               layout=exported.input_layout, dtype=exported.input_dtype, scale=scale,
                               zero_point=zero_point)
    out_scale, out_zero_point = exported.output_quantization or (None, None)
    return ModelEntry(
        name=f"{source.role}.{artifact.format}.{artifact.precision}", task=source.task,
        architecture=source.architecture, file=exported.path.name, format=artifact.format,
        precision=artifact.precision, inputs=(spec,),
        outputs=tuple(OutputSpec(name, (1, *output_shape), meaning, exported.output_dtype, out_scale, out_zero_point)
                      for name in exported.output_names),
        sha256=sha256_file(exported.path), source_sha256=source.sha256, calibration=calibration,
        threshold=source.threshold if source.task == "verify" else None,
        extra={"training_metrics": source.metrics, "checkpoint_created": source.created, **source.passes,
               **exported.details},
    )


def with_engine_recipe(entry: ModelEntry) -> ModelEntry:
    """An ONNX entry for a TensorRT board carries how the device builds its engine
    (edge.runtime.backends.tensorrt_engine): the file's precision and the batches the kiosk feeds it."""
    if entry.format != "onnx":
        return entry
    from edge.runtime.backends.tensorrt_engine import EngineRecipe

    recipe = EngineRecipe.from_dict(None, entry.precision, entry.images_per_face)
    if entry.task == "detect":              # a detector converted from TFLite has a fixed batch of one image
        recipe = dataclasses.replace(recipe, max_batch=1)
    return dataclasses.replace(entry, extra={**entry.extra, "tensorrt": recipe.to_dict()})


def _calibration_record(calibration: CalibrationSet, exported: ExportedFile) -> dict:
    return {"fingerprint": calibration.fingerprint, "method": exported.calibration_method,
            "images": len(calibration.images)}


def _swap_into_place(staging: Path, final: Path) -> None:
    """Two renames on one filesystem: readers see the old bundle or the new one, never a mixture."""
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        final.rename(old)
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def tool_versions(artifacts: list[Artifact]) -> dict[str, str]:
    import cv2

    names = ["torch", "onnx", "onnxruntime", "ai-edge-litert", "numpy"]
    if any(a.format == "tflite" for a in artifacts):
        names.append("litert-torch")
    if any(a.precision == "fp16" and a.format == "onnx" for a in artifacts):
        names.append("onnxconverter-common")
    tools = {"python": platform.python_version(), "opencv": cv2.__version__}
    for name in names:
        try:
            tools[name] = version(name)
        except PackageNotFoundError:
            tools[name] = "not installed"
    return tools


def _default_precisions(board: BoardConfig) -> str:
    """What the runtime will default to on the board: its measured profile's choices when this machine holds one
    (copied from the board), else the config's facts; the line says which."""
    profile = read_profile(board)
    tasks = dict.fromkeys([*board.precision, *(profile.precisions if profile else ())])
    source = profile.describe() if profile else "board config (facts, not measured)"
    return ", ".join(f"{task} {default_precisions(board, task, profile)[0][0]}" for task in tasks) + f" ({source})"
