"""The training loop both trainers share: epochs of optimisation steps, a progress bar, an optional time limit."""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from trainer.device import pick_device
from trainer.report import Clock, epoch_bar, interrupt_notice, stop_notice


@dataclass
class LoopResult:
    steps: int
    loss: float          # the last step's loss
    stopped: bool        # True when --max_seconds ended the run early


def start_run(seed: int, threads: int | None, device: str) -> tuple[np.random.Generator, torch.device]:
    """Seeds torch and numpy, sets torch's CPU threads (default: all cores) and picks the device."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads or os.cpu_count() or 1)
    return np.random.default_rng(seed), pick_device(device)


def optimise(loss: torch.Tensor, optimizer: torch.optim.Optimizer, schedule) -> float:
    """One gradient step and one learning-rate schedule step; returns the loss as a float."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    schedule.step()
    return loss.item()


def train_epochs(name: str, model: torch.nn.Module, *, epochs: int, steps_per_epoch: int, images_per_epoch: int,
                 batches: Callable[[], Iterator[np.ndarray]],
                 step: Callable[[np.ndarray, int], tuple[torch.Tensor, dict]],
                 optimizer: torch.optim.Optimizer, schedule, clock: Clock) -> LoopResult:
    """Runs ``epochs`` passes over ``batches()``; ``step(index, steps_so_far)`` returns the loss and extra
    progress-bar fields. Stops after the step during which the clock runs out, or at Ctrl+C, and says so: the
    caller then evaluates and saves what there is."""
    steps, loss_value = 0, float("nan")
    try:
        for epoch in range(1, epochs + 1):
            model.train()
            with epoch_bar(epoch, epochs, images_per_epoch) as bar:
                for index in batches():
                    loss, postfix = step(index, steps)
                    loss_value = optimise(loss, optimizer, schedule)
                    steps += 1
                    bar.set_postfix(loss=f"{loss_value:.4f}", **postfix, refresh=False)   # drawn by update()
                    bar.update(len(index))
                    if clock.expired():
                        print(stop_notice(name, clock, steps / steps_per_epoch, epochs), file=sys.stderr)
                        return LoopResult(steps, loss_value, True)
    except KeyboardInterrupt:
        print(interrupt_notice(name, round(steps / steps_per_epoch, 1), epochs), file=sys.stderr)
        return LoopResult(steps, loss_value, True)
    return LoopResult(steps, loss_value, False)
