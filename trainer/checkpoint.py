"""The checkpoint contract: one ``.pt`` file is enough to rebuild, evaluate and compile a model.

It holds the architecture name and full config, the weights, the task, the preprocessing (an edge InputSpec,
the same one the bundle manifest will carry), evaluation metrics and, for a verifier, the decision threshold
calibrated at a target false-accept rate. No side files.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from edge.base.errors import UserError
from edge.runtime.boards import TASKS
from edge.runtime.manifest import InputSpec, input_spec_from_dict
from trainer.layer_shapes import apply_layer_shapes, layer_shapes

CHECKPOINT_VERSION = 1
CHECKPOINT_KEYS = ("architecture", "config", "task", "state_dict", "preprocessing", "metrics", "threshold", "created")


@dataclass
class Checkpoint:
    architecture: str
    config: dict
    task: str
    state_dict: dict
    preprocessing: InputSpec
    metrics: dict
    threshold: float | None = None      # verify: cosine-similarity threshold at ``metrics['target_far']``
    created: str = ""
    sha256: str = ""                    # of the file it was read from (compile records it as source_sha256)
    layer_shapes: dict | None = None    # a pruned model's layer widths (trainer.layer_shapes)

    def build_model(self) -> torch.nn.Module:
        """The model with its weights, in eval mode."""
        from trainer.models import build_model

        model = build_model(self.architecture, self.config)
        if self.layer_shapes:
            apply_layer_shapes(model, self.layer_shapes)
        model.load_state_dict(self.state_dict)
        return model.eval()


def save_checkpoint(path: str | Path, *, architecture: str, config: dict, task: str, model: torch.nn.Module,
                    preprocessing: InputSpec, metrics: dict, threshold: float | None = None,
                    pruned: bool = False) -> str:
    """Writes the checkpoint atomically and returns its sha256; a ``pruned`` model's layer widths go with it."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    payload = {
        "checkpoint_version": CHECKPOINT_VERSION,
        "architecture": architecture,
        "config": config,
        "task": task,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "preprocessing": dataclasses.asdict(preprocessing),
        "layer_shapes": layer_shapes(model) if pruned else None,
        "metrics": metrics,
        "threshold": threshold,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    data = write_payload(path, payload)
    return hashlib.sha256(data).hexdigest()


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint {path} does not exist (train one with python -m trainer)")
    payload, data = read_payload(path, "a checkpoint")
    if not isinstance(payload, dict) or payload.get("checkpoint_version") != CHECKPOINT_VERSION:
        raise UserError(f"{path}: unknown checkpoint version; this trainer writes version {CHECKPOINT_VERSION}")
    missing = sorted(set(CHECKPOINT_KEYS) - set(payload))
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}: it was not written by python -m trainer")
    return Checkpoint(
        architecture=payload["architecture"], config=payload["config"], task=payload["task"],
        state_dict=payload["state_dict"], preprocessing=input_spec_from_dict(payload["preprocessing"]),
        metrics=payload["metrics"],
        threshold=payload["threshold"], created=payload["created"], sha256=hashlib.sha256(data).hexdigest(),
        layer_shapes=payload.get("layer_shapes"),
    )


def write_payload(path: str | Path, payload: dict) -> bytes:
    """``torch.save`` to a temporary file renamed over ``path``: a crash leaves the old file or the new, never half
    of one. Returns the bytes written."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return data


def read_payload(path: Path, what: str) -> tuple[object, bytes]:
    """(the unpickled tensors-and-plain-values payload, the file's bytes); one line naming ``what`` it should be when
    the file is truncated, foreign or garbage."""
    data = path.read_bytes()
    return load_tensors(data, f"{path} is not {what} written by python -m trainer"), data


def load_tensors(data: bytes, refusal: str) -> object:
    """``data`` unpickled by torch, tensors and plain values only; a UserError ``refusal (why)`` when it cannot be.
    torch's unpickler fails on garbage in whatever way the bytes lead it to (a KeyError for a text file, an
    IndexError for a few stray bytes), and its messages run to many lines: the first names the kind."""
    try:
        with warnings.catch_warnings():     # torch warns about a foreign pickle protocol before failing on it
            warnings.simplefilter("ignore")
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:    # noqa: BLE001: any failure to unpickle is the file's fault, said in one line
        first = (str(err).strip().splitlines() or [""])[0][:120]
        raise UserError(f"{refusal} ({type(err).__name__}{': ' + first if first else ''})") from None
