"""Mixed precision on a GPU: autocast to bfloat16 where the GPU has it (Ampere and later, Jetson Orin), else float16
with a gradient scaler. Off on a CPU, where autocast buys nothing for these convolutions."""
from __future__ import annotations

import contextlib

import torch

MODES = ("auto", "off")


class MixedPrecision:
    def __init__(self, device: torch.device, mode: str = "auto"):
        if mode not in MODES:
            raise ValueError(f"mixed precision mode must be one of {MODES}, got {mode!r}")
        self.enabled = mode == "auto" and device.type == "cuda"
        self.device = device
        self.dtype = (torch.bfloat16 if self.enabled and torch.cuda.is_bf16_supported() else torch.float16)
        # bfloat16 keeps float32's exponent range, so only float16 needs its gradients scaled
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.enabled and self.dtype == torch.float16)

    @property
    def name(self) -> str:
        return str(self.dtype).removeprefix("torch.") if self.enabled else "off"

    def autocast(self):
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Zero the gradients, backpropagate ``loss`` (scaled when float16) and step ``optimizer``."""
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.scaler.load_state_dict(state)
