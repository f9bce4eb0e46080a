"""A MiniFASNet state dict (``2.7_80x80_MiniFASNetV2.pth`` ...) -> ``MiniFASNet`` -> an ordinary liveness checkpoint.

The config is read off the state dict's tensor shapes (every block's width, which blocks squeeze and excite), the
module is built from it and the weights are loaded strictly, so a file of another network is refused in one line
saying what did not fit. The crop (how many times the face box the model sees) is the number the publisher puts at
the front of the file name, unless given.
"""
from __future__ import annotations

import collections
import re
from pathlib import Path

import torch

from edge.base.errors import UserError
from edge.runtime.crops import box_crop_for_scale
from edge.runtime.manifest import InputSpec, sha256_file
from trainer.checkpoint import load_tensors, save_checkpoint
from trainer.models.minifasnet import STAGE_NAMES, MiniFASNet

LICENCE = "Apache-2.0 (minivision-ai/Silent-Face-Anti-Spoofing; keep its LICENSE beside the weights)"
# "2.7_80x80_MiniFASNetV2.pth" -> 2.7; "4_0_0_80x80_MiniFASNetV1SE.pth" -> 4 (the publisher reads the first field)
SCALE_IN_NAME = re.compile(r"(\d+(?:\.\d+)?)_")
LIVE_CLASS = 1


def weights(state: dict, source: str) -> dict[str, torch.Tensor]:
    """The state dict's tensors with a DataParallel ``module.`` prefix stripped."""
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{source} is not a MiniFASNet state dict: not a mapping of names to tensors")
    return {key.removeprefix("module."): value for key, value in state.items()}


def shape(tensors: dict[str, torch.Tensor], key: str, source: str) -> tuple[int, ...]:
    if key not in tensors:
        raise UserError(f"{source} is not a MiniFASNet state dict: it has no {key}")
    return tuple(tensors[key].shape)


def block_widths(tensors: dict, prefix: str, source: str) -> tuple[int, int]:
    """(expanded width, squeeze-excite width or 0) of the bottleneck at ``prefix``."""
    expanded = shape(tensors, f"{prefix}.conv.conv.weight", source)[0]
    squeezed = f"{prefix}.se_module.fc1.weight"
    return expanded, (tensors[squeezed].shape[0] if squeezed in tensors else 0)


def config_from_state(tensors: dict[str, torch.Tensor], source: str, input_size: int = 80) -> dict:
    """MiniFASNet's keyword arguments read off the tensor shapes (the strict load then checks every tensor)."""
    stem = shape(tensors, "conv1.conv.weight", source)[0]
    stages = []
    for opening, residual in STAGE_NAMES:
        count = len({key.split(".")[2] for key in tensors if key.startswith(f"{residual}.model.")})
        stages.append({
            "expanded": block_widths(tensors, opening, source)[0],
            "channels": shape(tensors, f"{opening}.project.conv.weight", source)[0],
            "blocks": [list(block_widths(tensors, f"{residual}.model.{index}", source)) for index in range(count)],
        })
    head, _, side, _ = shape(tensors, "conv_6_dw.conv.weight", source)
    if side * 16 != input_size:
        raise UserError(f"{source}: its last depthwise kernel is {side}x{side}, which fits {side * 16}x{side * 16} "
                        f"inputs, not {input_size}x{input_size}")
    embedding = shape(tensors, "linear.weight", source)[0]
    classes = shape(tensors, "prob.weight", source)[0]
    if classes <= LIVE_CLASS:
        raise UserError(f"{source} is not a MiniFASNet state dict: {classes} classes, the live one is class "
                        f"{LIVE_CLASS}")
    return {"stages": stages, "input_size": input_size, "stem": stem, "head": head, "embedding": embedding,
            "classes": classes}


def load_minifasnet(path: str | Path) -> tuple[MiniFASNet, dict]:
    """The module with the file's weights (eval mode) and its config."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist: give the MiniFASNet .pth file (e.g. 2.7_80x80_MiniFASNetV2.pth)")
    state = load_tensors(path.read_bytes(), f"{path.name} is not a MiniFASNet state dict: torch cannot read it")
    tensors = weights(state, path.name)
    config = config_from_state(tensors, path.name)
    model = MiniFASNet(**config)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as err:      # torch lists every missing, unexpected and misshapen key over many lines
        first = " ".join(str(err).split())[:200]
        raise UserError(f"{path.name} is not a MiniFASNet state dict: {first}") from None
    return model.eval(), config


def scale_from_name(path: Path) -> float:
    """The crop's scale the publisher writes at the front of the file name."""
    found = SCALE_IN_NAME.match(path.name)
    if found is None:
        raise UserError(f"{path.name}: the crop's scale is not at the front of its name (as in "
                        f"2.7_80x80_MiniFASNetV2.pth): give it with --crop_scale")
    return float(found.group(1))


def variant(config: dict) -> str:
    """The publisher's name for the network: MiniFASNetV1SE squeezes and excites, V2 does not."""
    squeezes = any(squeezed for stage in config["stages"] for _, squeezed in stage["blocks"])
    return "MiniFASNetV1SE-like" if squeezes else "MiniFASNetV2-like"


def texture_input_spec(size: int, crop: str) -> InputSpec:
    """The publisher's preprocessing: the box crop resized to size x size, BGR, pixel values as they are."""
    return InputSpec(name="input", shape=(1, 3, size, size), layout="NCHW", dtype="float32", colour="BGR",
                     mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), crop=crop)


def import_minifasnet(out_path: str | Path, source_path: str | Path | None, crop_scale: float | None = None) -> str:
    """Writes a MiniFASNet file as a ``minifasnet`` liveness checkpoint; returns the checkpoint's sha256."""
    if source_path is None:
        raise UserError("say which MiniFASNet file to import: python -m trainer import minifasnet FILE.pth --out "
                        "runs/texture.pt (nothing ships it in a package)")
    path = Path(source_path)
    model, config = load_minifasnet(path)
    crop = box_crop_for_scale(crop_scale if crop_scale is not None else scale_from_name(path))
    metrics = {
        "source_file": path.name,
        "source_sha256": sha256_file(path),
        "network": variant(config),
        "parameters": sum(p.numel() for p in model.parameters()),
        "convs": sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()),
        "layers": dict(collections.Counter(type(m).__name__ for m in model.modules() if not list(m.children()))),
        "licence": LICENCE,
        "output": f"{config['classes']} logits; softmax class {LIVE_CLASS} is a live face",
        "crop": f"{crop.scale:g}x the face box, {crop.origin}",
    }
    return save_checkpoint(out_path, architecture="minifasnet", config=config, task="liveness", model=model,
                           preprocessing=texture_input_spec(config["input_size"], crop.name), metrics=metrics)
