"""The optimisation step both trainers share."""
from __future__ import annotations

import torch


def optimise(loss: torch.Tensor, optimizer: torch.optim.Optimizer, schedule) -> float:
    """One gradient step and one learning-rate schedule step; returns the loss as a float."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    schedule.step()
    return loss.item()
