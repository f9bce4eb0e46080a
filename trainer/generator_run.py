"""What every generator trainer shares (autoencoders, GANs, the face swap): the run's start, the held-out share,
option checks, near-duplicate removal and the result. A lower module than the trainers, so the GAN and face-swap
trainers need nothing from one another (``trainer.generator_families`` dispatches to them)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.base.errors import UserError
from trainer.data import FaceSet, load_faces
from trainer.dedup import near_duplicates
from trainer.distributed import check_batch, join_world
from trainer.loop import start_run
from trainer.precision import MixedPrecision

HOLDOUT = 0.1          # fraction of images held out for the reconstruction PSNR


@dataclass
class Result:
    metrics: dict
    checkpoint: Path
    report: Path
    samples: Path
    summary: str


def leave_world(world, name: str, out: Path) -> Result | None:
    """Ends the DDP world; on a rank other than 0, the result that says so (rank 0 goes on to evaluate and save)."""
    world.finish()
    return None if world.main else Result({}, out, out, out, f"{name}: rank {world.rank} of {world.size} done")


def begin_run(data, seed: int, threads: int | None, device: str, batch_size: int, mixed_precision: str,
              dedup_distance: int, one_person: bool = False):
    """What every generator run starts with: seeds, device, the DDP world, mixed precision, and the faces without
    near-duplicates -> (rng, device, world, precision, faces, the removed duplicates' lines)."""
    rng, target = start_run(seed, threads, device)
    world, target = join_world(target)
    check_batch(world, batch_size)
    faces, duplicates = without_near_duplicates(load_faces(data, one_person=one_person), dedup_distance)
    return rng, target, world, MixedPrecision(target, mixed_precision), faces, duplicates


def without_near_duplicates(faces: FaceSet, max_distance: int) -> tuple[FaceSet, list[str]]:
    """The faces with every near-copy of an earlier one removed, and one line per removed file."""
    found = near_duplicates(faces.images, max_distance)
    dropped = {index for _, index, _ in found}
    lines = [f"{faces.paths[index]}\tlike {faces.paths[kept]}\t({bits} bits)" for kept, index, bits in found]
    return faces.subset(np.array([i for i in range(len(faces)) if i not in dropped])), lines


def check_options(epochs: int, batch_size: int, lr: float, max_seconds: float | None) -> None:
    if epochs < 1:
        raise UserError(f"--epochs must be at least 1, got {epochs}")
    if batch_size < 2:
        raise UserError(f"--batch_size must be at least 2, got {batch_size}")
    if lr <= 0:
        raise UserError(f"--lr must be positive, got {lr}")
    if max_seconds is not None and max_seconds <= 0:
        raise UserError(f"--max_seconds must be positive, got {max_seconds}")
