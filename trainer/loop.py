"""The training loop both trainers share: epochs of optimisation steps, a progress bar, an optional time limit."""
from __future__ import annotations

import contextlib
import copy
import os
import sys
from collections.abc import Callable, Iterator
import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from trainer.device import pick_device
from trainer.distributed import World
from trainer.precision import MixedPrecision
from trainer.report import Clock, epoch_bar, interrupt_notice, stop_notice
from trainer.run_state import RunState


@dataclass
class LoopResult:
    steps: int
    loss: float          # the last step's loss
    stopped: bool        # True when --max_seconds, Ctrl+C or early stopping ended the run early
    stopped_because: str = ""           # which of them, in words for the report ("" when every epoch ran)
    best_epoch: int | None = None       # with validation: the epoch whose weights the model holds at the end
    history: list[dict] = field(default_factory=list)   # per epoch: train loss, validation loss, seconds


@dataclass(frozen=True)
class Validation:
    """Early stopping: ``loss()`` on held-out data after every epoch; the best epoch's weights are kept, and the
    run stops after ``patience`` epochs without a better one (0: never stops early, still keeps the best)."""

    loss: Callable[[], float]
    patience: int = 0
    log: Path | None = None             # a CSV row per epoch
    after_epoch: Callable[[int], None] | None = None   # e.g. a sample grid of a fixed batch
    ties_to_later: bool = False         # an equal loss moves the best to the later epoch (a saturating score)


def start_run(seed: int, threads: int | None, device: str) -> tuple[np.random.Generator, torch.device]:
    """Seeds torch and numpy, sets torch's CPU threads (default: all cores) and picks the device."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads or os.cpu_count() or 1)
    return np.random.default_rng(seed), pick_device(device)


def optimise(loss: torch.Tensor, optimizer: torch.optim.Optimizer, schedule,
             precision: MixedPrecision | None = None) -> float:
    """One gradient step (through ``precision``'s gradient scaler when given) and one learning-rate schedule step;
    returns the loss as a float."""
    gradient_step(loss, optimizer, precision)
    schedule.step()
    return loss.item()


def gradient_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                  precision: MixedPrecision | None = None) -> None:
    if precision is not None:
        precision.step(loss, optimizer)
        return
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


@dataclass(frozen=True)
class Extras:
    """The optional parts of a run: resuming (``state`` written after each epoch, ``resume_from`` read first),
    mixed precision, and the DDP world (only its rank 0 shows progress and writes files)."""

    state: RunState | None = None
    resume_from: Path | None = None
    precision: MixedPrecision | None = None
    world: World = World()


def train_epochs(name: str, model: torch.nn.Module, *, epochs: int, steps_per_epoch: int, images_per_epoch: int,
                 batches: Callable[[], Iterator[np.ndarray]],
                 step: Callable[[np.ndarray, int], tuple[torch.Tensor, dict]],
                 optimizer: torch.optim.Optimizer, schedule, clock: Clock,
                 validation: Validation | None = None, extras: Extras = Extras()) -> LoopResult:
    """Runs ``epochs`` passes over ``batches()``; ``step(index, steps_so_far)`` returns the loss and extra
    progress-bar fields. Stops after the step during which the clock runs out, or at Ctrl+C, and says so: the
    caller then evaluates and saves what there is. With ``validation``, the model ends holding its best epoch's
    weights. ``result.steps`` counts this process's steps (a resumed run: since it resumed)."""
    result = LoopResult(0, float("nan"), False)
    main = extras.world.main
    if validation is not None and not main:       # every rank validates (early stopping), rank 0 writes
        validation = Validation(validation.loss, validation.patience, ties_to_later=validation.ties_to_later)
    tracker = _BestEpoch(model, validation, clock) if validation else None
    done = 0
    if extras.state is not None and extras.resume_from is not None:
        done, progress = extras.state.restore(extras.resume_from, epochs)
        if tracker:
            tracker.load(progress)
        print(f"{name}: resumed from {extras.resume_from} after epoch {done}", file=sys.stderr)
    autocast = extras.precision.autocast if extras.precision else contextlib.nullcontext
    try:
        for epoch in range(done + 1, epochs + 1):
            model.train()
            with epoch_bar(epoch, epochs, images_per_epoch, disable=not main) as bar:
                for index in batches():
                    with autocast():
                        loss, postfix = step(index, result.steps)
                    result.loss = optimise(loss, optimizer, schedule, extras.precision)
                    result.steps += 1
                    bar.set_postfix(loss=f"{result.loss:.4f}", **postfix, refresh=False)   # drawn by update()
                    bar.update(len(index))
                    if clock.expired():
                        print(stop_notice(name, clock, result.steps / steps_per_epoch, epochs), file=sys.stderr)
                        result.stopped, result.stopped_because = True, "the time limit (--max_seconds)"
                        return tracker.finish(result) if tracker else result
            patience_out = bool(tracker and tracker.end_of_epoch(epoch, result.loss))
            if extras.state is not None and main:
                extras.state.save(epoch, epochs, tracker.progress() if tracker else {})
            if patience_out:
                print(f"{name}: stopped early after epoch {epoch}: no better validation loss for "
                      f"{validation.patience} epochs (best: epoch {tracker.best_epoch})", file=sys.stderr)
                result.stopped = True
                result.stopped_because = f"no better validation loss for {validation.patience} epochs (--patience)"
                break
    except KeyboardInterrupt:
        print(interrupt_notice(name, round(result.steps / steps_per_epoch, 1), epochs), file=sys.stderr)
        result.stopped, result.stopped_because = True, "interrupted (Ctrl+C or SIGTERM)"
    return tracker.finish(result) if tracker else result


class _BestEpoch:
    """Validation after each epoch: the best weights kept in memory, a CSV row written, patience counted."""

    def __init__(self, model: torch.nn.Module, validation: Validation, clock: Clock):
        self.model, self.validation, self.clock = model, validation, clock
        self.best_loss, self.best_epoch, self.best_state, self.history = float("inf"), None, None, []

    def end_of_epoch(self, epoch: int, train_loss: float) -> bool:
        """Records the epoch; True when patience has run out."""
        self.model.eval()
        loss = float(self.validation.loss())
        self.history.append({"epoch": epoch, "train_loss": round(train_loss, 6), "validation_loss": round(loss, 6),
                             "seconds": round(self.clock.elapsed, 1)})
        if self.validation.log is not None:
            self._write_log()
        if self.validation.after_epoch is not None:
            self.validation.after_epoch(epoch)
        if loss < self.best_loss or (self.validation.ties_to_later and loss == self.best_loss):
            self.best_loss, self.best_epoch = loss, epoch
            self.best_state = copy.deepcopy(self.model.state_dict())
        patience = self.validation.patience
        return patience > 0 and epoch - self.best_epoch >= patience

    def progress(self) -> dict:
        """What a resumed run needs to go on choosing the best epoch."""
        return {"best_loss": self.best_loss, "best_epoch": self.best_epoch, "best_state": self.best_state,
                "history": self.history}

    def load(self, progress: dict) -> None:
        if progress:
            self.best_loss, self.best_epoch = progress["best_loss"], progress["best_epoch"]
            self.best_state, self.history = progress["best_state"], progress["history"]

    def finish(self, result: LoopResult) -> LoopResult:
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        result.best_epoch, result.history = self.best_epoch, self.history
        return result

    def _write_log(self) -> None:
        self.validation.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.validation.log, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(self.history[0]))
            writer.writeheader()
            writer.writerows(self.history)
