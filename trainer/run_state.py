"""What a run saves after every epoch so that ``--resume`` continues it where it stopped: ``<out>_last.pt``.

It holds the model's and the optimisers' states, the learning-rate schedule, the random streams and the best
epoch so far, so a resumed run draws the same batches and ends with the same weights as one that never stopped.
It is refused for a run of another architecture or configuration, with the difference named.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from edge.base.errors import UserError
from trainer.checkpoint import read_payload, write_payload

STATE_VERSION = 1


@dataclass
class RunState:
    path: Path                                  # written after every epoch (rank 0 only)
    identity: dict                              # architecture and config: what a resume must match
    parts: dict                                 # name -> anything with state_dict() / load_state_dict()
    rng: np.random.Generator
    streams: dict = field(default_factory=dict)   # name -> torch.Generator (noise, latents)

    def save(self, epoch: int, epochs: int, progress: dict) -> None:
        payload = {"state_version": STATE_VERSION, "identity": self.identity, "epoch": epoch, "epochs": epochs,
                   "progress": progress,
                   "parts": {name: part.state_dict() for name, part in self.parts.items()},
                   "rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                   "streams": {name: stream.get_state() for name, stream in self.streams.items()}}
        write_payload(self.path, payload)

    def restore(self, source: Path, epochs: int) -> tuple[int, dict]:
        """Loads ``source`` into the parts and streams; returns (epochs already done, the loop's progress)."""
        payload = read_state(source)
        if payload["identity"] != self.identity:
            theirs, ours = payload["identity"], self.identity
            differs = sorted(k for k in {**theirs.get("config", {}), **ours.get("config", {})}
                             if theirs.get("config", {}).get(k) != ours.get("config", {}).get(k))
            what = (f"architecture {theirs.get('architecture')}, this run {ours.get('architecture')}"
                    if theirs.get("architecture") != ours.get("architecture") else f"config differs in {differs}")
            raise UserError(f"--resume {source} is another model's run ({what}); resume with the same recipe")
        if payload["epoch"] >= payload["epochs"]:
            raise UserError(f"--resume {source}: that run finished all its {payload['epochs']} epochs")
        if payload["epochs"] != epochs:
            # the learning-rate schedule was laid out over the planned epochs: resuming finishes that plan
            raise UserError(f"--resume {source} continues a run planned for {payload['epochs']} epochs; resume it "
                            f"with epochs={payload['epochs']}")
        for name, part in self.parts.items():
            part.load_state_dict(payload["parts"][name])
        self.rng.bit_generator.state = payload["rng"]
        torch.set_rng_state(payload["torch_rng"])
        for name, stream in self.streams.items():
            stream.set_state(payload["streams"][name])
        return payload["epoch"], payload["progress"]


def read_state(source: Path) -> dict:
    if not source.exists():
        raise UserError(f"--resume {source} does not exist (a run writes <out>_last.pt after every epoch)")
    payload, _ = read_payload(source, "a run state (--resume)")
    if not isinstance(payload, dict) or payload.get("state_version") != STATE_VERSION:
        hint = (" (it is a finished checkpoint: resume from the <out>_last.pt next to it)"
                if isinstance(payload, dict) and "checkpoint_version" in payload else "")
        raise UserError(f"--resume {source} is not a run state written by python -m trainer{hint}")
    return payload
