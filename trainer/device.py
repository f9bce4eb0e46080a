"""Where training runs: the CPU here, a CUDA GPU on a training box. The checkpoint is the same either way."""
from __future__ import annotations

import torch

from edge.base.errors import UserError

DEVICES = ("auto", "cpu", "cuda")


def pick_device(name: str) -> torch.device:
    """``auto`` takes the GPU when there is one; asking for ``cuda`` without one is an error, not a fallback."""
    if name not in DEVICES:
        raise UserError(f"unknown device {name!r}; valid: {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but torch sees no CUDA GPU (this torch build: "
                        f"{torch.__version__}); use --device cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def describe(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
