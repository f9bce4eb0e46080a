"""Several processes training one model with PyTorch DDP, launched by ``torchrun``.

``torchrun --nproc_per_node 2 -m trainer generator ...`` starts one process per GPU (or per CPU share, with the
gloo backend) and sets RANK, LOCAL_RANK and WORLD_SIZE. Every process seeds its generators alike, so all draw the
same shuffled batches and the same augmentation; each then computes the loss on its own slice of the batch and DDP
averages the gradients, which makes one step the same as a single process's step on the whole batch. Only rank 0
shows progress and writes files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from edge.base.errors import UserError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def shard(self, rows):
        """This process's slice of a batch (every ``size``-th row from ``rank``)."""
        return rows[self.rank::self.size] if self.distributed else rows

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` under DDP when distributed; call the wrapper's forward so gradients are averaged."""
        if not self.distributed:
            return module
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.local_rank] if next(module.parameters()).is_cuda else None
        return DistributedDataParallel(module, device_ids=device_ids)

    def finish(self) -> None:
        if self.distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def join_world(device: torch.device) -> tuple[World, torch.device]:
    """The world torchrun set up (a world of one without it) and this process's device."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World(), device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"torchrun started {size} processes but this machine has {torch.cuda.device_count()} "
                            "GPUs; lower --nproc_per_node")
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return World(rank, size, local_rank), device


def check_batch(world: World, batch_size: int) -> None:
    if world.distributed and batch_size % world.size:
        raise UserError(f"--batch_size {batch_size} does not split evenly over {world.size} processes")
