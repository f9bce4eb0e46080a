"""The bundle contract: ``bundle/<board>/manifest.json`` describes every model file the runtime may load.

``edge`` reads preprocessing from here and never guesses it from a graph. A bundle with an unknown schema
version, a missing file or a file whose checksum does not match is refused with a message that says which.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from edge.base.errors import UserError

# 2: lists of named inputs and outputs, typed detector decode parameters, per-artifact match calibration.
SCHEMA_VERSION = 2
MANIFEST_NAME = "manifest.json"
# A board and a file named in a manifest are names inside the bundle or the board's folder, never paths: no
# separator, no "..", nothing absolute (a bundle is installed under its board's name, and its files are loaded).
PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True)
class InputSpec:
    """How to turn an image into one of the model's input tensors."""

    name: str
    shape: tuple[int, ...]            # with batch 1, e.g. (1, 3, 112, 112)
    layout: str                       # "NCHW" | "NHWC" | "NC" (a latent vector: compile.decoders)
    dtype: str                        # "float32" | "int8" | "uint8"
    colour: str                       # "RGB" | "BGR" | "GREY" (one channel)
    mean: tuple[float, float, float]  # per channel, in 0..255 pixel units: x = (pixel - mean) / std
    std: tuple[float, float, float]
    scale: float | None = None        # for integer inputs: real = scale * (q - zero_point)
    zero_point: int | None = None
    crop: str = "none"           # "letterbox", "none", or an alignment template of edge.faces.align (arcface112, ...)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the image the model takes."""
        if self.layout == "NCHW":
            return self.shape[2], self.shape[3]
        return self.shape[1], self.shape[2]


@dataclass(frozen=True)
class OutputSpec:
    name: str
    shape: tuple[int, ...]
    meaning: str = ""                 # e.g. "embedding (L2-normalise)", "face logit per anchor"
    dtype: str = "float32"            # an integer output is dequantized by the backend: real = scale * (q - zp)
    scale: float | None = None
    zero_point: int | None = None


@dataclass(frozen=True)
class AnchorDecode:
    """How an anchor-based (SSD/BlazeFace) detector's raw outputs become boxes and key points."""

    strides: tuple[int, ...]          # one per feature layer; consecutive equal strides share one grid
    anchors_per_layer: int = 2        # anchors each layer puts in every grid cell
    anchor_offset: float = 0.5        # anchor centre within its cell
    score_threshold: float = 0.5
    iou_threshold: float = 0.3        # weighted NMS merges candidates overlapping more than this
    keypoints: tuple[str, ...] = ()   # names of the predicted key points, in output order
    boxes_output: str = "regressors"  # output holding box + key point offsets per anchor
    scores_output: str = "classificators"


@dataclass(frozen=True)
class ScoreCohort:
    """Templates of faces nobody enrolls, made by one verifier file, that its scores are normalised against
    (edge.faces.score_norm): a file of the bundle, beside the model."""

    file: str                         # relative to the bundle directory: an .npz of ``vectors`` and ``image_sha1``
    sha256: str
    faces: int
    top: int                          # each face's statistics come from its ``top`` highest cohort scores
    source: str                       # what the faces were, e.g. "faces80: 2000 of 8844 faces (seed 0)"


@dataclass(frozen=True)
class MatchCalibration:
    """How a verifier artifact's cosine scores fall on real pairs, measured with the backend that runs it.

    Impostor scores come from identities disjoint from the pairs the report quotes. The highest of them are kept
    so that the runtime can move the 1:1 threshold when the gallery's size changes (``edge.faces.matching``).
    """

    source: str                       # what the pairs were made of, e.g. "real: orl, yaleb (24 identities)"
    target_far: float                 # false accepts per probe the kiosk aims at (open set, any gallery size)
    threshold: float                  # the 1:1 threshold at ``target_far`` (a gallery of one)
    impostor_pairs: int
    genuine_pairs: int
    far_curve: tuple[tuple[float, float], ...]   # (1:1 false-accept rate, threshold), rates falling, log-spaced
    mirror_average: bool = False      # scores were measured on embeddings averaged with the mirrored face's
    report: dict = field(default_factory=dict)   # balanced accuracy etc. on pairs that did not choose it
    cohort: ScoreCohort | None = None # scores are S-normalised against it (thresholds in its units); None: cosines

    @property
    def score(self) -> str:
        return "cosine" if self.cohort is None else f"s-norm (top {self.cohort.top} of {self.cohort.faces} faces)"


@dataclass(frozen=True)
class ModelEntry:
    name: str                         # unique in the bundle, e.g. "verifier.onnx.int8"
    task: str                         # detect | verify | generate
    architecture: str
    file: str                         # relative to the bundle directory
    format: str                       # onnx | tflite (a file format; the runtime that runs it is a backend)
    precision: str                    # fp32 | fp16 | int8
    inputs: tuple[InputSpec, ...]     # the first is the image input
    outputs: tuple[OutputSpec, ...]
    sha256: str
    source_sha256: str                # the checkpoint (or vendor model file) it was made from
    calibration: dict | None = None   # {"fingerprint", "method", "images"} for quantized files
    accuracy: dict | None = None      # agreement with the FP32 reference, measured by the backend that runs it
    threshold: float | None = None    # verifier 1:1 decision threshold (cosine similarity), this artifact's own
    match: MatchCalibration | None = None          # verifiers: real-pair calibration behind ``threshold``
    compatible_with: tuple[str, ...] = ()          # verifiers: kinds (format:precision) of files from the same
                                                   # checkpoint and crop whose gallery templates this one may match
                                                   # (compile measured their cross pairs within the flip gate)
    decode: AnchorDecode | None = None             # detectors
    extra: dict = field(default_factory=dict)      # facts for people: training metrics, licence, exporter, ...

    @property
    def input(self) -> InputSpec:
        """The image input (every model here takes one image; further inputs would follow it)."""
        return self.inputs[0]

    @property
    def images_per_face(self) -> int:
        """How many images the kiosk feeds this file per face, in one batch: the face and, with mirror averaging,
        its mirror image."""
        return 2 if self.match is not None and self.match.mirror_average else 1

    @property
    def kind(self) -> str:
        return f"{self.format}:{self.precision}"

    @property
    def cohort(self) -> ScoreCohort | None:
        """Verifiers: the templates its scores are normalised against (None: plain cosines)."""
        return self.match.cohort if self.match is not None else None

    @property
    def embedding_space(self) -> str:
        """Embeddings are comparable only between files made from one checkpoint with one crop."""
        return f"{self.source_sha256}:{self.input.crop}"


@dataclass(frozen=True)
class Manifest:
    board: str
    created: str
    tools: dict[str, str]
    models: tuple[ModelEntry, ...]
    schema_version: int = SCHEMA_VERSION

    def for_task(self, task: str) -> list[ModelEntry]:
        return [m for m in self.models if m.task == task]

    def find(self, task: str, fmt: str | None = None, precision: str | None = None) -> ModelEntry:
        """The entry for a task, optionally narrowed by format and precision; errors list what exists."""
        matches = [m for m in self.for_task(task)
                   if (fmt is None or m.format == fmt) and (precision is None or m.precision == precision)]
        if not matches:
            have = ", ".join(f"{m.task}/{m.format}/{m.precision}" for m in self.models) or "nothing"
            raise UserError(f"bundle has no {task} model with format={fmt} precision={precision}; it has: {have}")
        return matches[0]


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(bundle_dir: str | Path, manifest: Manifest) -> Path:
    path = Path(bundle_dir) / MANIFEST_NAME
    text = json.dumps(dataclasses.asdict(manifest), indent=2, sort_keys=False)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(text + "\n")
    tmp.replace(path)  # atomic: a reader never sees half a manifest
    return path


def read_manifest(bundle_dir: str | Path, verify_files: bool = True) -> Manifest:
    """Reads and validates a bundle's manifest; with ``verify_files`` also checks every file's sha256."""
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / MANIFEST_NAME
    if not path.exists():
        raise UserError(f"{bundle_dir} is not a bundle: {MANIFEST_NAME} is missing (make one with python -m compile)")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON: {err}") from err
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if version != SCHEMA_VERSION:
        older = isinstance(version, int) and version < SCHEMA_VERSION
        hint = "; recompile the bundle with python -m compile" if older else ""
        raise UserError(f"{path}: {'older' if older else 'unknown'} schema_version {version!r}; this runtime reads "
                        f"version {SCHEMA_VERSION}{hint}")
    try:
        manifest = Manifest(
            board=raw["board"], created=raw["created"], tools=raw["tools"], schema_version=version,
            models=tuple(_entry(m) for m in raw["models"]),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"{path}: malformed manifest ({type(err).__name__}: {err})") from err
    named = [("board", manifest.board), *((f"model {m.name}'s file", m.file) for m in manifest.models),
             *((f"model {m.name}'s score cohort", cohort.file) for m, cohort in cohorts(manifest))]
    for what, name in named:
        if not isinstance(name, str) or not PLAIN_NAME.fullmatch(name):
            raise UserError(f"{path}: the {what} {name!r} is not a plain name (letters, digits, '.', '_', '-'; no "
                            f"folders, no '..'): refused")
    if verify_files:
        for entry in manifest.models:
            verify_entry_file(bundle_dir, entry)
        for entry, cohort in cohorts(manifest):
            verify_file(bundle_dir, cohort.file, cohort.sha256, f"the score cohort of {entry.name}")
    return manifest


def cohorts(manifest: "Manifest") -> list[tuple[ModelEntry, ScoreCohort]]:
    return [(m, m.cohort) for m in manifest.models if m.cohort is not None]


def verify_entry_file(bundle_dir: Path, entry: ModelEntry) -> Path:
    return verify_file(bundle_dir, entry.file, entry.sha256, f"model {entry.name}")


def verify_file(bundle_dir: Path, name: str, sha256: str, what: str) -> Path:
    path = bundle_dir / name
    if not path.exists():
        raise UserError(f"bundle file {name} ({what}) is missing from {bundle_dir}")
    actual = sha256_file(path)
    if actual != sha256:
        raise UserError(f"bundle file {name} ({what}) fails its checksum: "
                        f"manifest says {sha256[:12]}, file is {actual[:12]}; recompile the bundle")
    return path


def _entry(raw: dict) -> ModelEntry:
    values = dict(raw)
    values["inputs"] = tuple(input_spec_from_dict(spec) for spec in values.pop("inputs"))
    values["outputs"] = tuple(OutputSpec(**{**o, "shape": tuple(o["shape"])}) for o in values.pop("outputs"))
    values["compatible_with"] = tuple(values.get("compatible_with", ()))
    if values.get("decode") is not None:
        decode = dict(values["decode"])
        decode["strides"] = tuple(decode["strides"])
        decode["keypoints"] = tuple(decode.get("keypoints", ()))
        values["decode"] = AnchorDecode(**decode)
    if values.get("match") is not None:
        curve = tuple((float(far), float(t)) for far, t in values["match"]["far_curve"])
        cohort = values["match"].get("cohort")
        values["match"] = MatchCalibration(**{**values["match"], "far_curve": curve,
                                              "cohort": ScoreCohort(**cohort) if cohort is not None else None})
    entry = ModelEntry(**values)
    check_types(entry, values.get("name", "model"))
    return entry


def check_types(value, where: str) -> None:
    """Every field of a manifest dataclass holds its declared type (a threshold that is a string would fail
    later, mid-stream, with a traceback); raises TypeError naming the field."""
    hints = typing.get_type_hints(type(value))
    for item in dataclasses.fields(value):
        _check_value(getattr(value, item.name), hints[item.name], f"{where}.{item.name}")


def _check_value(value, hint, where: str) -> None:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, hint):
            raise TypeError(f"{where} must be a {hint.__name__} record, got {value!r}")
        check_types(value, where)
    elif origin is tuple:
        if not isinstance(value, tuple):
            raise TypeError(f"{where} must be a list, got {value!r}")
        for index, element in enumerate(value):
            _check_value(element, args[0] if args[-1] is Ellipsis else args[index], f"{where}[{index}]")
    elif origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise TypeError(f"{where} must be a mapping, got {value!r}")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{where} must be a number, got {value!r}")
    elif isinstance(hint, type) and (not isinstance(value, hint) or (hint is int and isinstance(value, bool))):
        raise TypeError(f"{where} must be {hint.__name__}, got {value!r}")


def input_spec_from_dict(raw: dict) -> InputSpec:
    return InputSpec(**{**raw, "shape": tuple(raw["shape"]), "mean": tuple(raw["mean"]), "std": tuple(raw["std"])})
