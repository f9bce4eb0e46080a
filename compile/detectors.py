"""A board's detector files: MediaPipe's BlazeFace TFLite file as it ships, and ONNX files made from it.

The packaged TFLite file is the FP32 reference (we did not train it: it goes in unchanged, checked by sha256).
TensorRT builds engines from ONNX only and onnxruntime quantizes ONNX only, so a board that lists ONNX detector
files (``detector_artifacts``) gets the TFLite graph converted by tflite2onnx (its float16 weights become float32
initializers), raised to the board's opset and simplified by onnxslim; FP16 and INT8 files follow from that
graph through the exporters trained models use. Each file is gated the way the kiosk uses it: the whole detector
(letterbox, model, anchor decoding, weighted NMS, close-up retries) on held-out photos, against the packaged
file's faces: each face found again, box IoU and key-point error within the precision's budget, no extra faces.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import logging
import shutil
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import onnx

from compile import exporters
from compile.calibration import CalibrationSet
from compile.exporters import ExportFailed, ExportRequest
from compile.report import ArtifactRow
from edge.base.errors import UserError
from edge.base.progress import progress_bar
from edge.faces.detect import Detection, box_iou, build_detector, letterbox
from edge.faces.packaged_detector import detector_entry
from edge.runtime.backends.base import BackendOptions
from edge.runtime.boards import Artifact, BoardConfig
from edge.runtime.manifest import InputSpec, ModelEntry, sha256_file
from edge.runtime.models import backend_here, backend_on_board, load_model
from edge.runtime.packaged import packaged_model_path
from edge.runtime.preprocess import prepare_batch

REFERENCE = Artifact("tflite", "fp32")
MATCH_IOU = 0.5           # a face counts as found again when a box overlaps the reference's this much
MIN_GATE_FACES = 10       # faces the reference must find in the held-out photos for a gate to mean anything


@dataclass(frozen=True)
class DetectorBudget:
    """How close a detector file must stay to the packaged FP32 file on held-out photos."""

    found: float          # share of the reference's faces found again (and at most 1 - found extra faces)
    box_iou: float        # mean IoU of the faces found again
    keypoints: float      # mean key-point distance, as a share of the reference box's width


# FP32 ONNX is the same network, so only float rounding may differ. INT8's budget is wide enough for the
# key points' few-pixel wobble on large faces (measured: see the README), tight enough to catch a broken
# quantization (which loses faces or moves boxes by a third).
BUDGETS = {
    "fp32": DetectorBudget(found=1.0, box_iou=0.99, keypoints=0.005),
    "fp16": DetectorBudget(found=0.98, box_iou=0.97, keypoints=0.015),
    "int8": DetectorBudget(found=0.95, box_iou=0.90, keypoints=0.04),
}


def require_tflite2onnx() -> None:
    """Fails, saying what to install, where the converter behind every ONNX detector file is missing."""
    if importlib.util.find_spec("tflite2onnx") is None:
        raise UserError("ONNX detector files need tflite2onnx: pip install -e '.[compile]'")


@dataclass(frozen=True)
class TfliteGraph:
    """An ExportRequest's model when it is a TFLite file rather than a torch module: it writes its own FP32 ONNX."""

    path: Path

    @property
    def exporter(self) -> str:
        return f"tflite2onnx {version('tflite2onnx')} + onnx version converter + onnxslim {version('onnxslim')}"

    def write_onnx(self, out: Path, opset: int) -> None:
        require_tflite2onnx()
        import tflite2onnx

        from compile.export_onnx import simplify

        converted = out.with_name(f"{out.stem}.tflite2onnx.onnx")
        quiet = logging.getLogger("tflite2onnx")
        level = quiet.level
        quiet.setLevel(logging.ERROR)        # it warns once per float16 tensor that float16 is "not tested"
        try:
            tflite2onnx.convert(str(self.path), str(converted))
        except Exception as err:             # the converter raises bare exceptions for ops it does not know
            raise ExportFailed(f"tflite2onnx cannot convert {self.path.name}: {err}") from err
        finally:
            quiet.setLevel(level)
        model = onnx.version_converter.convert_version(onnx.load(str(converted)), opset)
        onnx.save(model, str(out))
        simplify(out)


@dataclass(frozen=True)
class DetectorPhotos:
    """Photos for the detector files: calibration for INT8, held-out photos for the gates, and the faces the
    packaged file finds in those (the reference), per detector."""

    photos: CalibrationSet
    reference: dict[str, list[list[Detection]]]

    @classmethod
    def load(cls, photos: CalibrationSet, names: list[str], threads: int) -> "DetectorPhotos":
        """Runs the packaged detectors on the held-out photos; refuses photos in which they find too few faces to
        judge a file by (before any export starts)."""
        reference = {}
        for name in names:
            entry = packaged_entry(name)
            reference[name] = _faces(packaged_model_path(name).parent, entry, "tflite", photos.held_out, threads)
            found = sum(map(len, reference[name]))
            if found < MIN_GATE_FACES:
                raise UserError(f"the packaged {name} detector finds {found} faces in the {len(photos.held_out)} "
                                f"held-out photos of {photos.root}; its ONNX files' gate needs at least "
                                f"{MIN_GATE_FACES}: give --detector_photos a folder of photos with faces")
        return cls(photos, reference)

    def describe(self) -> str:
        return (f"`{self.photos.root}`: {len(self.photos.images)} photos calibrate INT8, {len(self.photos.held_out)} "
                f"others gate every file against the packaged FP32 TFLite file's faces")


def compile_detectors(board: BoardConfig, names: list[str], artifacts: list[Artifact], photos: DetectorPhotos | None,
                      staging: Path, workdir: Path, calibration_method: str, threads: int
                      ) -> tuple[list[ModelEntry], list[ArtifactRow]]:
    """Every detector the board's strategy runs, in every detector format it lists; rejected files are left out."""
    if photos is None and any(a != REFERENCE for a in artifacts):
        raise UserError("ONNX detector files are gated on photos: give --detector_photos DIR (or --calibration)")
    entries, rows = [], []
    for name in names:
        for artifact in artifacts:
            if artifact == REFERENCE:
                entry = _copy_packaged(name, staging)
                entries.append(entry)
                rows.append(_packaged_row(entry, board, staging, photos))
                continue
            entry, row = _compile_one(board, name, artifact, photos, staging, workdir, calibration_method, threads)
            rows.append(row)
            if row.passed:
                entries.append(entry)
            elif entry is not None:
                (staging / entry.file).unlink(missing_ok=True)
    return entries, rows


def describe_detector_files(artifacts: list[Artifact], photos: DetectorPhotos | None) -> str:
    kinds = ", ".join(map(str, artifacts))
    if all(a == REFERENCE for a in artifacts):
        return f"{kinds} (the packaged file, checked by sha256)"
    return f"{kinds}; ONNX files converted from the packaged TFLite file by tflite2onnx; photos: {photos.describe()}"


def _copy_packaged(name: str, staging: Path) -> ModelEntry:
    file = f"detector.{name}.tflite"
    shutil.copyfile(packaged_model_path(name), staging / file)
    return detector_entry(name, file, staging / file)


def _packaged_row(entry: ModelEntry, board: BoardConfig, staging: Path, photos: DetectorPhotos | None) -> ArtifactRow:
    """The packaged file's report row: not gated (it is the reference), loaded here by the backend that checks it."""
    backend, note = backend_here(entry, board)
    load_model(staging, entry, backend, BackendOptions(threads=1)).close()
    what = "the packaged file, checked by sha256"
    if photos is not None:
        faces = sum(map(len, photos.reference[entry.architecture]))
        what += (f"; the reference: {faces} faces in {len(photos.photos.held_out)} held-out photos, which the ONNX "
                 f"files are gated against")
    return ArtifactRow(model=entry.name, file=entry.file, size_kb=(staging / entry.file).stat().st_size / 1024,
                       metric="reference", mean=float("nan"), min=float("nan"), budget=float("nan"), passed=True,
                       backend=backend, note="; ".join(filter(None, [what, note])))


def packaged_entry(name: str) -> ModelEntry:
    """The manifest entry of the installed package's file, where it lies."""
    path = packaged_model_path(name)
    return detector_entry(name, path.name, path)


def onnx_spec(packaged: ModelEntry) -> InputSpec:
    """The packaged file's preprocessing, in the NCHW layout tflite2onnx gives the converted graph."""
    _, side, _, channels = packaged.input.shape
    return dataclasses.replace(packaged.input, layout="NCHW", shape=(1, channels, side, side))


def _compile_one(board: BoardConfig, name: str, artifact: Artifact, photos: DetectorPhotos, staging: Path,
                 workdir: Path, calibration_method: str, threads: int) -> tuple[ModelEntry | None, ArtifactRow]:
    base = packaged_entry(name)
    spec = onnx_spec(base)
    side = spec.size[0]
    path = staging / f"detector.{name}.{artifact.precision}.{artifact.format}"
    label = f"detector.{name}.{artifact.format}.{artifact.precision}"
    budget = BUDGETS[artifact.precision]
    calibration = None
    if artifact.precision == "int8":
        calibration = prepare_batch([letterbox(image, side)[0] for image in photos.photos.images], spec)
    request = ExportRequest(model=TfliteGraph(packaged_model_path(name)), spec=spec, output_name="", path=path,
                            workdir=workdir, opset=board.onnx_opset, calibration=calibration,
                            calibration_method=calibration_method, int8_activations=board.int8_activations,
                            float_heads=True)
    try:
        exported = exporters.export(artifact, request)
        if set(exported.output_names) != {o.name for o in base.outputs}:
            raise ExportFailed(f"the converted graph's outputs {list(exported.output_names)} are not the packaged "
                               f"file's {[o.name for o in base.outputs]}, which the anchor decoding reads by name")
    except ExportFailed as err:
        path.unlink(missing_ok=True)
        return None, ArtifactRow(model=label, file=path.name, size_kb=0.0, metric="box IoU", mean=float("nan"),
                                 min=float("nan"), budget=budget.box_iou, passed=False, backend="-", reason=str(err))
    entry = dataclasses.replace(
        base, name=label, file=path.name, format=artifact.format, precision=artifact.precision,
        inputs=(dataclasses.replace(spec, name=exported.input_name, shape=exported.input_shape),),
        sha256=sha256_file(path),
        calibration=({"fingerprint": photos.photos.fingerprint, "method": exported.calibration_method,
                      "images": len(photos.photos.images)} if calibration is not None else None),
        extra={**base.extra, **exported.details})
    backend, note = backend_here(entry, board)
    found = _faces(staging, entry, backend, photos.photos.held_out, threads)
    accuracy = agreement(photos.reference[name], found, budget)
    accuracy["board_backend"] = backend_on_board(entry, board)
    entry = dataclasses.replace(entry, accuracy=accuracy)
    note = "; ".join(filter(None, [accuracy["summary"], note]))
    return entry, ArtifactRow(model=label, file=path.name, size_kb=path.stat().st_size / 1024, metric="box IoU",
                              mean=accuracy["mean"], min=accuracy["min"], budget=budget.box_iou,
                              passed=accuracy["passed"], backend=backend, reason=accuracy["reason"], note=note)


def _faces(folder: Path, entry: ModelEntry, backend: str, photos: list[np.ndarray],
           threads: int) -> list[list[Detection]]:
    model = load_model(folder, entry, backend, BackendOptions(threads=threads))
    try:
        detector = build_detector(model)
        return [detector.detect(photo) for photo in progress_bar(photos, desc=entry.file, unit="photo", leave=False)]
    finally:
        model.close()


def agreement(reference: list[list[Detection]], candidate: list[list[Detection]], budget: DetectorBudget) -> dict:
    """How a detector file's faces on each photo compare with the reference's: share found again (greedy, best
    IoU first), extra faces, IoU and key-point error of the faces found again, and the verdict."""
    ious, point_errors, expected, extra = [], [], 0, 0
    for wanted, got in zip(reference, candidate):
        expected += len(wanted)
        free = list(range(len(got)))
        for face in sorted(wanted, key=lambda d: -d.score):
            if not free:
                break
            overlaps = box_iou(face.box, np.array([got[i].box for i in free]).reshape(-1, 4))
            best = int(np.argmax(overlaps))
            if overlaps[best] < MATCH_IOU:
                continue
            match = got[free.pop(best)]
            ious.append(float(overlaps[best]))
            width = max(float(face.box[2] - face.box[0]), 1.0)
            point_errors.append(float(np.linalg.norm(match.keypoints - face.keypoints, axis=1).mean()) / width)
        extra += len(free)
    if not expected:
        raise UserError("the reference detector found no face in the held-out photos: give --detector_photos a "
                        "folder of photos with faces")
    found = len(ious) / expected
    mean_iou = float(np.mean(ious)) if ious else 0.0
    points = float(np.mean(point_errors)) if point_errors else float("inf")
    failures = []
    if found < budget.found or extra > (1 - budget.found) * expected:
        failures.append(f"{len(ious)} of {expected} faces found again and {extra} extra (budget "
                        f"{100 * budget.found:g} %)")
    if mean_iou < budget.box_iou:
        failures.append(f"mean box IoU {mean_iou:.3f} < {budget.box_iou}")
    if points > budget.keypoints:
        failures.append(f"key points off by {100 * points:.2f} % of the box width "
                        f"(budget {100 * budget.keypoints:g} %)")
    return {"metric": "box IoU", "mean": mean_iou, "min": float(min(ious)) if ious else 0.0, "budget": budget.box_iou,
            "faces": expected, "found": len(ious), "extra": extra, "keypoint_error": points,
            "keypoint_budget": budget.keypoints, "passed": not failures, "reason": "; ".join(failures),
            "summary": f"{len(ious)}/{expected} faces, {extra} extra, key points {100 * points:.2f} % of box width"}
