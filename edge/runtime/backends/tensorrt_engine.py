"""TensorRT engines: built on the device from a bundle's ONNX file by a recipe, and cached beside the bundle.

An engine is specific to the TensorRT version and the GPU that built it, so it cannot ship in a bundle; the bundle
carries the ONNX file and the recipe (``EngineRecipe``, in the manifest entry's ``extra["tensorrt"]``), and the
first start on a device builds the engine (minutes on a Jetson) and keeps it in ``<bundle>/engines/`` under a
name holding the ONNX file's and the recipe's digest, the TensorRT version and the GPU. The builder's timing
cache is kept there too, so a rebuild (a new recipe, another precision) reuses the kernel timings.

INT8 comes from the QDQ graph itself (explicit quantization): no calibrator runs on the device. TensorRT reads
only symmetric signed INT8, which is why a board that runs TensorRT compiles INT8 with int8 activations.
Written against the TensorRT 8.x and 10.x Python APIs; no TensorRT ran on the machines this was built on.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from edge.base.errors import UserError

log = logging.getLogger(__name__)

PRECISION_FLAGS = {"fp32": (), "fp16": ("FP16",), "int8": ("INT8", "FP16")}   # FP16 for layers left unquantized


@dataclass(frozen=True)
class EngineRecipe:
    """How to build one file's engine: compile writes it into the manifest, the device follows it."""

    precision: str = "fp32"          # the ONNX file's precision: fp32 | fp16 | int8 (QDQ)
    workspace_mb: int = 512          # builder scratch memory: a Jetson Orin Nano shares 8 GB with the CPU
    opt_batch: int = 1               # the batch the engine is tuned for (2: a face and its mirror)
    max_batch: int = 2

    @classmethod
    def from_dict(cls, raw: dict | None, precision: str, batch: int) -> "EngineRecipe":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw or {}) - fields
        if unknown:
            raise UserError(f"unknown TensorRT recipe keys {sorted(unknown)}; valid: {sorted(fields)}")
        defaults = {"precision": precision, "opt_batch": batch, "max_batch": max(2, batch)}
        recipe = cls(**{**defaults, **(raw or {})})
        if recipe.precision not in PRECISION_FLAGS:
            raise UserError(f"TensorRT recipe precision {recipe.precision!r}; valid: {', '.join(PRECISION_FLAGS)}")
        if not 1 <= recipe.opt_batch <= recipe.max_batch:
            raise UserError(f"TensorRT recipe batches need 1 <= opt_batch <= max_batch, got {recipe}")
        return recipe

    @property
    def flags(self) -> tuple[str, ...]:
        return PRECISION_FLAGS[self.precision]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def engine_path(cache: Path, onnx: Path, onnx_bytes: bytes, recipe: EngineRecipe, trt_version: str,
                gpu: str) -> Path:
    digest = hashlib.sha256(onnx_bytes + json.dumps(recipe.to_dict(), sort_keys=True).encode()).hexdigest()[:16]
    return cache / f"{onnx.stem}.{digest}.trt{trt_version}.{gpu}.engine"


def gpu_slug(name: str, compute_capability: str) -> str:
    """``NVIDIA Orin``, 8.7 -> ``nvidia-orin-sm87``: a file-name-safe key for the GPU."""
    return f"{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}-sm{compute_capability.replace('.', '')}"


def load_or_build(trt, logger, onnx: Path, recipe: EngineRecipe, cache: Path | None, gpu: str) -> bytes:
    """The serialized engine for ``onnx``: read from the cache when this TensorRT and GPU built it before, else
    built now and written there (an unwritable cache is said once and the engine kept in memory)."""
    onnx_bytes = onnx.read_bytes()
    path = engine_path(cache, onnx, onnx_bytes, recipe, trt.__version__, gpu) if cache else None
    if path is not None and path.is_file():
        return path.read_bytes()
    timing = cache / f"timing.trt{trt.__version__}.{gpu}.cache" if cache else None
    log.warning("building the TensorRT engine for %s (%s; first start on this device, can take minutes)",
                onnx.name, ", ".join(recipe.flags) or "fp32")
    engine, timing_bytes = build_engine(trt, logger, onnx_bytes, recipe,
                                        timing.read_bytes() if timing and timing.is_file() else b"")
    if path is not None:
        try:
            cache.mkdir(parents=True, exist_ok=True)
            _write_atomic(path, engine)
            _write_atomic(timing, timing_bytes)
        except OSError as err:
            log.warning("could not cache the TensorRT engine in %s (%s): it will be built again at each start",
                        cache, err)
    return engine


def build_engine(trt, logger, onnx_bytes: bytes, recipe: EngineRecipe, timing_cache: bytes) -> tuple[bytes, bytes]:
    """Parses the ONNX graph and builds a serialized engine (a dynamic batch of 1..max_batch where the graph has
    one); returns the engine and the updated timing cache."""
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    # TensorRT 10 networks are always explicit-batch and the flag is deprecated; 8.x must be asked for it.
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UserError(f"TensorRT could not parse the ONNX file: {errors or 'no reason given'}")
    config = builder.create_builder_config()
    workspace = recipe.workspace_mb << 20
    if hasattr(config, "set_memory_pool_limit"):                  # 8.4 and later
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    else:
        config.max_workspace_size = workspace
    for flag in recipe.flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    # A profile for each input with a dynamic batch; a fixed-shape graph (a detector converted from TFLite takes one
    # image) needs none, and TensorRT refuses a profile that contradicts its fixed shape.
    dynamic = [t for t in (network.get_input(i) for i in range(network.num_inputs)) if tuple(t.shape)[0] == -1]
    if dynamic:
        profile = builder.create_optimization_profile()
        for tensor in dynamic:
            rest = tuple(tensor.shape)[1:]
            profile.set_shape(tensor.name, (1, *rest), (recipe.opt_batch, *rest), (recipe.max_batch, *rest))
        config.add_optimization_profile(profile)
    cache = config.create_timing_cache(timing_cache)
    config.set_timing_cache(cache, False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UserError("TensorRT could not build the engine (its log above says why)")
    return bytes(serialized), bytes(config.get_timing_cache().serialize())


def _write_atomic(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)
