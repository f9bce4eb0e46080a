"""The bundle contract: ``bundle/<board>/manifest.json`` describes every model file the runtime may load.

``edge`` reads preprocessing from here and never guesses it from a graph. A bundle with an unknown schema
version, a missing file or a file whose checksum does not match is refused with a message that says which.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from edge.errors import UserError

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class InputSpec:
    """How to turn an image into the model's input tensor."""

    name: str
    shape: tuple[int, ...]            # with batch 1, e.g. (1, 3, 112, 112)
    layout: str                       # "NCHW" | "NHWC"
    dtype: str                        # "float32" | "int8" | "uint8"
    colour: str                       # "RGB" | "BGR"
    mean: tuple[float, float, float]  # per channel, in 0..255 pixel units: x = (pixel - mean) / std
    std: tuple[float, float, float]
    scale: float | None = None        # for integer inputs: real = scale * (q - zero_point)
    zero_point: int | None = None
    crop: str = "none"                # how the image was cropped before resizing: "arcface112" | "letterbox" | "none"

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
    meaning: str = ""                 # e.g. "embedding (L2-normalise)", "image in [0, 1], NCHW RGB"


@dataclass(frozen=True)
class ModelEntry:
    name: str                         # unique in the bundle, e.g. "verifier.onnx.int8"
    task: str                         # detect | verify | generate
    architecture: str
    file: str                         # relative to the bundle directory
    format: str                       # onnx | tflite | tensorrt
    precision: str                    # fp32 | fp16 | int8
    input: InputSpec
    outputs: tuple[OutputSpec, ...]
    sha256: str
    source_sha256: str                # the checkpoint (or vendor model file) it was made from
    calibration: dict | None = None   # {"fingerprint", "method", "images"} for quantized files
    accuracy: dict | None = None      # agreement with the FP32 reference, measured by the backend that runs it
    threshold: float | None = None    # verifier decision threshold (cosine similarity)
    extra: dict = field(default_factory=dict)   # task-specific facts, e.g. detector anchors, training metrics


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
        raise UserError(f"{path}: unknown schema_version {version!r}; this runtime reads version {SCHEMA_VERSION}")
    try:
        manifest = Manifest(
            board=raw["board"], created=raw["created"], tools=raw["tools"], schema_version=version,
            models=tuple(_entry(m) for m in raw["models"]),
        )
    except (KeyError, TypeError) as err:
        raise UserError(f"{path}: malformed manifest ({type(err).__name__}: {err})") from err
    if verify_files:
        for entry in manifest.models:
            verify_entry_file(bundle_dir, entry)
    return manifest


def verify_entry_file(bundle_dir: Path, entry: ModelEntry) -> Path:
    path = bundle_dir / entry.file
    if not path.exists():
        raise UserError(f"bundle file {entry.file} (model {entry.name}) is missing from {bundle_dir}")
    actual = sha256_file(path)
    if actual != entry.sha256:
        raise UserError(f"bundle file {entry.file} (model {entry.name}) fails its checksum: "
                        f"manifest says {entry.sha256[:12]}, file is {actual[:12]}; recompile the bundle")
    return path


def _entry(raw: dict) -> ModelEntry:
    values = dict(raw)
    spec = dict(values.pop("input"))
    spec["shape"] = tuple(spec["shape"])
    spec["mean"] = tuple(spec["mean"])
    spec["std"] = tuple(spec["std"])
    outputs = tuple(OutputSpec(o["name"], tuple(o["shape"]), o.get("meaning", "")) for o in values.pop("outputs"))
    return ModelEntry(input=InputSpec(**spec), outputs=outputs, **values)
