"""Board configs (``board_configs/<name>.yaml``) loaded into a typed, frozen, validated dataclass.

A board config says what a board's hardware and runtimes can use; compile, edge and benchmarks all read it, so
it lives in the base layer. Unknown keys and wrong types are errors naming the key and the valid ones.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from edge.base.errors import UserError
from edge.base.paths import BOARD_DIR
from edge.base.registry import Registry, unknown_name_message
from edge.runtime.backends import BACKENDS
from edge.runtime.packaged import vendor_model

ALIASES_FILE = "aliases.yaml"
TASKS = ("detect", "verify", "generate", "liveness")
FORMATS = ("onnx", "tflite")                 # file formats; runtimes (backends) are another axis
RUNTIME_NOT_FORMAT = {"tensorrt": "TensorRT is a runtime, not a file format: it builds its engine on the board "
                                  "from the bundle's onnx file"}
PRECISIONS = ("fp32", "fp16", "int8")
INT8_ACTIVATIONS = ("uint8", "int8", "auto")      # auto: both timed where compile runs, the faster kept
# The packaged BlazeFace file as it ships, and the ONNX files compile makes from it (compile.detectors). Its TFLite
# graph cannot be quantized again: ai-edge-quantizer refuses the full-integer recipe on it, and its weight-only
# recipe left the float16 weights as they were.
DETECTOR_ARTIFACTS = ("tflite:fp32", "onnx:fp32", "onnx:fp16", "onnx:int8")
# The names a board config may give its detection strategy and tracker, each bound lazily to its implementation:
# the config's vocabulary lives with the config, so checking a name imports nothing above this module.
STRATEGIES = Registry("detection strategy", {
    "whole_frame": "edge.faces.scan:WholeFrame",
    "tiled": "edge.faces.scan:TiledScan",
})
TRACKERS = Registry("tracker", {"iou": "edge.faces.tracking:IouTracker"})
# Liveness checks by the names a board config's ``liveness.checks`` and ``edge serve --liveness`` use
# (edge.liveness.checks gives their contract).
LIVENESS_CHECKS = Registry("liveness check", {
    "planar": "edge.liveness.planar:PlanarCheck",
    "texture": "edge.liveness.texture:TextureCheck",
})


@dataclass(frozen=True)
class Artifact:
    """One model file compile makes for a board: a format at a precision."""

    format: str
    precision: str

    @classmethod
    def parse(cls, text: str) -> "Artifact":
        fmt, sep, precision = text.partition(":")
        if fmt in RUNTIME_NOT_FORMAT:
            raise UserError(f"bad artifact {text!r}: {RUNTIME_NOT_FORMAT[fmt]}")
        if not sep or fmt not in FORMATS or precision not in PRECISIONS:
            raise UserError(f"bad artifact {text!r}: write FORMAT:PRECISION with FORMAT in {FORMATS} "
                            f"and PRECISION in {PRECISIONS}")
        return cls(fmt, precision)

    def __str__(self) -> str:
        return f"{self.format}:{self.precision}"


@dataclass(frozen=True)
class BenchmarkCounts:
    warmup: int = 10
    repeat: int = 100


@dataclass(frozen=True)
class DetectionConfig:
    """How the kiosk finds faces in a stream (edge.faces.scan): which strategy, with which packaged detectors."""

    strategy: str = "whole_frame"             # STRATEGIES: whole_frame | tiled
    detector: str = "blazeface_short"         # whole frames, enrolment photos, and regions around known faces
    tile_detector: str = "blazeface_full"     # tiles of a large frame (tiled strategy)
    tile_size: int = 640                      # a frame larger than this is also scanned as tiles of about this size
    tile_overlap: float = 0.25                # share of a tile that overlaps its neighbour
    scan_period: int = 6                      # frames over which the whole frame is scanned once (with each detector)
    tile_period: int = 12                     # frames over which every tile is scanned once
    roi_scale: float = 2.5                    # side of the region searched around a known face, over its height
    tile_rescan: int = 5                      # a tile unchanged since its last scan skips its turn, but is scanned at
                                              # least once in this many turns (1: every turn)


@dataclass(frozen=True)
class TrackingConfig:
    """Tracks and decisions per visit (edge.faces.tracking, edge.kiosk.visits)."""

    tracker: str = "iou"                      # TRACKERS
    match_iou: float = 0.3                    # a detection continues a track when their boxes overlap this much
    confirm_hits: int = 3                     # detections before a track is a visit
    max_missed_s: float = 0.5                 # seconds (the stream's time) without a detection before a visit ends
    min_face: int = 40                        # face box height in pixels below which a face is not judged
    max_yaw: float = 0.45                     # nose offset from the eyes' midpoint over the eye distance
    min_sharpness: float = 0.08               # edge energy over contrast on the face at 48 px (edge.faces.quality)
    samples: int = 4                          # embeddings a visit may take at most
    sample_gap: int = 4                       # frames between two embeddings of one visit
    unknown_far: float = 0.5                  # per-probe rate whose threshold is the lower, "unknown" one
    steady_every: int = 4                     # a steady face is looked for in one frame of this many, its box predicted
                                              # in the others (1: every face in every frame); equal to sample_gap and
                                              # liveness.look_gap, a visit's looks fall in the frames it is looked for
    steady_motion: float = 0.1                # steady: its box moves less than this share of its width per frame, or
                                              # lands this close (per frame) to where its motion carried it, twice


@dataclass(frozen=True)
class LivenessConfig:
    """Whether the face at the door is live (edge.liveness): which checks judge each visit, and how long it may take."""

    checks: tuple[str, ...] = ("planar",)     # LIVENESS_CHECKS; a check whose file the bundle carries runs as well
    max_wait_s: float = 3.0                   # seconds a named visit waits for its liveness verdict, then insufficient
    retry_s: float = 10.0                     # seconds after that in which the visit may still settle its verdict (the
                                              # page asks for a head turn): its decision goes out again, judged anew
    look_gap: int = 4                         # frames between two liveness looks of one visit
    max_looks: int = 16                       # liveness looks a visit keeps at most (the newest)
    planar_parallax: float = 0.0125           # tracked points' parallax, over the face box's width, confirmed with
                                              # the plane taken out, above which the face moved as no flat picture
                                              # can (edge.liveness.planar)
    challenge_s: float = 6.0                  # seconds a person has to follow the page's request (--challenge)
    challenge_turn: float = 0.25              # how far the nose must move, over the eye distance, to follow it
    still_looks: int = 6                      # looks, each at or above the texture file's still threshold, that make
                                              # a face live without moving (edge.liveness.texture); 0: it must move


@dataclass(frozen=True)
class BoardConfig:
    name: str
    description: str
    arch: str                                   # x86_64 | aarch64
    cpu: str                                    # e.g. "Cortex-A72"
    accelerators: tuple[str, ...]               # e.g. ("cuda", "tensorrt"); empty on CPU-only boards
    backends: tuple[str, ...]                   # runtime preference order, names in edge.runtime.backends
    supports: dict[str, tuple[str, ...]]        # capability table: format -> precisions this board runs
    artifacts: tuple[str, ...]                  # what compile makes for each trained model, "format:precision"
    precision: dict[str, str]                   # task -> precision the runtime picks by default
    threads: int
    camera: str                                 # default frame source URI
    input_sizes: dict[str, tuple[int, ...]]     # task -> square input sides (pixels) the board is sized for
    onnx_opset: int                             # highest opset the board's runtimes accept
    int8_activations: str                       # uint8 | int8: activation type of INT8 files, chosen by measuring
    accuracy_budget: dict[str, float]           # precision -> minimum mean cosine similarity to the FP32 reference
    accuracy_floor: dict[str, float]            # precision -> minimum cosine on any single held-out image
    benchmark: BenchmarkCounts = field(default_factory=BenchmarkCounts)
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    liveness: LivenessConfig = field(default_factory=LivenessConfig)
    # the detector files a bundle carries, from DETECTOR_ARTIFACTS: the packaged TFLite file, plus ONNX files where
    # a backend needs them (TensorRT) or a board should measure them
    detector_artifacts: tuple[str, ...] = ("tflite:fp32",)

    def artifact_list(self) -> list[Artifact]:
        return [Artifact.parse(text) for text in self.artifacts]

    def detector_artifact_list(self) -> list[Artifact]:
        return [Artifact.parse(text) for text in self.detector_artifacts]


def board_names() -> list[str]:
    return sorted(p.stem for p in BOARD_DIR.glob("*.yaml") if p.name != ALIASES_FILE)


def aliases() -> dict[str, str]:
    path = BOARD_DIR / ALIASES_FILE
    return yaml.safe_load(path.read_text()) if path.exists() else {}


def resolve_board_name(name: str) -> str:
    """Maps an alias (``jetson``) to its board explicitly; unknown names fail with the valid ones."""
    alias_map = aliases()
    resolved = alias_map.get(name, name)
    if resolved not in board_names():
        raise UserError(unknown_name_message("board", name, board_names() + sorted(alias_map)))
    return resolved


def load_board(name_or_path: str | Path) -> BoardConfig:
    """Loads a board by name, alias or path to a YAML file: the config's facts and nothing else (a measured
    profile is read apart, by the commands that run on the board: edge.runtime.board_profile)."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = BOARD_DIR / f"{resolve_board_name(str(name_or_path))}.yaml"
    if not path.exists():
        raise UserError(f"board config {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise UserError(f"board config {path} is not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise UserError(f"board config {path} must be a mapping of keys to values")
    board = _build(BoardConfig, raw, str(path))
    _check_consistency(board, str(path))
    return board


def with_liveness(board: BoardConfig, settings: dict, where: str) -> BoardConfig:
    """``board`` with settings of its ``liveness`` block replaced (a benchmark's sweep), each key and value checked
    as a board config's are."""
    current = {f.name: getattr(board.liveness, f.name) for f in dataclasses.fields(LivenessConfig)}
    raw = {**{key: list(value) if isinstance(value, tuple) else value for key, value in current.items()}, **settings}
    changed = dataclasses.replace(board, liveness=_build(LivenessConfig, raw, f"{where}: liveness"))
    _check_stream_settings(changed, where)
    return changed


def _build(cls, raw: dict, where: str):
    """Builds dataclass ``cls`` from ``raw``, checking every key and value type."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(fields)}")
    missing = [name for name, f in fields.items() if name not in raw
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise UserError(f"{where}: missing key {missing[0]!r}")
    values = {name: _coerce(hints[name], value, f"{where}: key {name!r}") for name, value in raw.items()}
    return cls(**values)


def _coerce(hint, value, where: str):
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise UserError(f"{where} must be a mapping")
        return _build(hint, value, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise UserError(f"{where} must be a list")
        item = typing.get_args(hint)[0]
        return tuple(_coerce(item, v, where) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where} must be a mapping")
        key_type, value_type = typing.get_args(hint)
        # read-only: a board config is loaded once and shared; nobody may change it under another caller
        return types.MappingProxyType({_coerce(key_type, k, where): _coerce(value_type, v, f"{where}[{k}]")
                                       for k, v in value.items()})
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported config type {hint}")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise UserError(f"{where} must be of type {hint.__name__}, got {type(value).__name__} {value!r}")
    return value


def check_detector_artifacts(artifacts: list[Artifact], where: str) -> None:
    bad = [str(a) for a in artifacts if str(a) not in DETECTOR_ARTIFACTS]
    if bad:
        raise UserError(f"{where}: detector artifact {bad[0]} cannot be made; detectors come as "
                        f"{', '.join(DETECTOR_ARTIFACTS)} (the packaged TFLite graph cannot be quantized again)")
    if not artifacts:
        raise UserError(f"{where}: detector_artifacts is empty; a bundle needs a detector file")


def _check_consistency(board: BoardConfig, where: str) -> None:
    """Capabilities are data: every artifact and default precision must be in the board's capability table."""
    for name in board.backends:
        BACKENDS.target(name)
    for fmt, precisions in board.supports.items():
        if fmt not in FORMATS:
            why = f" ({RUNTIME_NOT_FORMAT[fmt]})" if fmt in RUNTIME_NOT_FORMAT else ""
            raise UserError(f"{where}: supports has unknown format {fmt!r}{why}; valid: {', '.join(FORMATS)}")
        bad = [p for p in precisions if p not in PRECISIONS]
        if bad:
            raise UserError(f"{where}: supports[{fmt}] has unknown precision {bad[0]!r}; "
                            f"valid: {', '.join(PRECISIONS)}")
    for artifact in board.artifact_list() + board.detector_artifact_list():
        if artifact.precision not in board.supports.get(artifact.format, ()):
            raise UserError(f"{where}: artifact {artifact} is not in the board's supports table")
    check_detector_artifacts(board.detector_artifact_list(), where)
    for task, precision in board.precision.items():
        if task not in TASKS:
            raise UserError(f"{where}: precision has unknown task {task!r}; valid: {', '.join(TASKS)}")
        if precision not in PRECISIONS:
            raise UserError(f"{where}: precision[{task}] {precision!r} is not one of {', '.join(PRECISIONS)}")
    if board.int8_activations not in INT8_ACTIVATIONS:
        raise UserError(f"{where}: int8_activations {board.int8_activations!r} is not one of "
                        f"{', '.join(INT8_ACTIVATIONS)}")
    if "tensorrt" in board.backends and "int8" in board.supports.get("onnx", ()) and board.int8_activations != "int8":
        # TensorRT reads only symmetric signed INT8 (explicit quantization): uint8 activations would not build
        raise UserError(f"{where}: a TensorRT board that runs INT8 ONNX files needs int8_activations: int8, not "
                        f"{board.int8_activations!r} (TensorRT reads only symmetric signed INT8)")
    for key in ("accuracy_budget", "accuracy_floor"):
        for precision in getattr(board, key):
            if precision not in PRECISIONS:
                raise UserError(f"{where}: {key} has unknown precision {precision!r}")
    _check_stream_settings(board, where)


def _check_stream_settings(board: BoardConfig, where: str) -> None:
    """Strategy, detector and tracker names must exist, and the numbers must make sense, before any frame."""
    detection, tracking = board.detection, board.tracking
    for registry, name, key in ((STRATEGIES, detection.strategy, "detection.strategy"),
                                (TRACKERS, tracking.tracker, "tracking.tracker")):
        try:
            registry.target(name)
        except UserError as err:
            raise UserError(f"{where}: {key}: {err}") from err
    for name in board.liveness.checks:
        try:
            LIVENESS_CHECKS.target(name)
        except UserError as err:
            raise UserError(f"{where}: liveness.checks: {err}") from err
    for key in ("detector", "tile_detector"):
        try:
            vendor_model(getattr(detection, key))
        except UserError as err:
            raise UserError(f"{where}: detection.{key}: {err}") from err
    positive = {"detection.tile_size": detection.tile_size, "detection.scan_period": detection.scan_period,
                "detection.tile_period": detection.tile_period, "detection.roi_scale": detection.roi_scale,
                "detection.tile_rescan": detection.tile_rescan,
                "tracking.confirm_hits": tracking.confirm_hits,
                "tracking.max_missed_s": tracking.max_missed_s, "tracking.samples": tracking.samples,
                "tracking.sample_gap": tracking.sample_gap, "tracking.steady_every": tracking.steady_every,
                "tracking.steady_motion": tracking.steady_motion, "liveness.max_wait_s": board.liveness.max_wait_s,
                "liveness.look_gap": board.liveness.look_gap, "liveness.max_looks": board.liveness.max_looks,
                "liveness.planar_parallax": board.liveness.planar_parallax,
                "liveness.challenge_s": board.liveness.challenge_s,
                "liveness.challenge_turn": board.liveness.challenge_turn}
    for key, value in positive.items():
        if not value > 0:                   # NaN too
            raise UserError(f"{where}: {key} must be positive, got {value}")
    if not board.liveness.retry_s >= 0:
        raise UserError(f"{where}: liveness.retry_s must be 0 (no second chance) or more, got {board.liveness.retry_s}")
    if not 0 <= board.liveness.still_looks <= board.liveness.max_looks:
        raise UserError(f"{where}: liveness.still_looks must be 0 (every face must move) up to liveness.max_looks "
                        f"({board.liveness.max_looks}), got {board.liveness.still_looks}")
    for key, value in {"detection.tile_overlap": detection.tile_overlap, "tracking.match_iou": tracking.match_iou,
                       "tracking.unknown_far": tracking.unknown_far}.items():
        if not 0 < value < 1:
            raise UserError(f"{where}: {key} must be between 0 and 1, got {value}")
