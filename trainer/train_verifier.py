"""Trains the face verifier (``mobilefacenet_s`` + ArcFace) and calibrates its threshold on unseen identities."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edge.base.errors import UserError
from edge.runtime.preprocess import verifier_input_spec
from trainer.checkpoint import save_checkpoint
from trainer.data import augment, batches, load_faces, split_identities, to_tensor
from trainer.device import describe
from trainer.evaluate import evaluate_verifier
from trainer.generator_run import check_options
from trainer.loop import start_run, train_epochs
from trainer.losses import ArcFaceHead, BatchHardTripletLoss, CosFaceHead
from trainer.models.mobilefacenet import MobileFaceNetS
from trainer.report import Clock, outputs_next_to, write_report

ARCHITECTURE = "mobilefacenet_s"
TRIPLET_K = 4          # images per identity in a triplet batch (P = batch_size / K identities)
# --loss -> a module called as loss(embeddings, labels); the triplet loss takes the heads' arguments and ignores
# the class count and scale
LOSSES = {"arcface": ArcFaceHead, "cosface": CosFaceHead,
          "triplet": lambda embedding, classes, scale, margin: BatchHardTripletLoss(margin)}
WARMUP = 0.2           # fraction of the planned steps over which the ArcFace margin ramps up from zero
WEIGHT_DECAY = 5e-4


@dataclass
class Result:
    metrics: dict
    checkpoint: Path
    report: Path
    summary: str


def train_verifier(data: str | Path, out: str | Path, *, epochs: int = 20, batch_size: int = 64, lr: float = 4e-3,
                   seed: int = 0, max_seconds: float | None = None, threads: int | None = None, embedding: int = 128,
                   width: float = 0.5, holdout: float = 0.25, target_far: float = 0.01, margin: float = 0.4,
                   scale: float = 30.0, device: str = "auto", command: str = "", loss: str = "arcface",
                   steps: int | None = None) -> Result:
    """``loss``: arcface, cosface (classifier heads) or triplet (batch-hard, on batches of P identities x
    TRIPLET_K images); ``steps``: a fixed number of optimisation steps instead of ``epochs`` (runs on sets of
    different sizes then train alike)."""
    check_options(epochs, batch_size, lr, max_seconds)
    check_verifier_options(embedding, width, holdout, target_far, margin, scale)
    if loss not in LOSSES:
        raise UserError(f"--loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    if steps is not None and steps < 1:
        raise UserError(f"--steps must be at least 1, got {steps}")
    rng, target = start_run(seed, threads, device)
    spec = verifier_input_spec()
    faces = load_faces(data)
    train, held = split_identities(faces, holdout, rng)
    # Class indices of the training identities only, 0..K-1, for the ArcFace head.
    train_ids, train_labels = np.unique(train.labels, return_inverse=True)

    config = {"width": width, "embedding": embedding, "input_size": spec.size[0]}
    # channels_last runs the depthwise convolutions about 1.5-2x faster on CPU with oneDNN.
    model = MobileFaceNetS(**config).to(target, memory_format=torch.channels_last)
    head = LOSSES[loss](embedding, len(train_ids), scale=scale, margin=0.0).to(target)
    labels = torch.from_numpy(train_labels).to(target)
    optimizer = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=lr, weight_decay=WEIGHT_DECAY)
    steps_per_epoch = max(1, len(train) // batch_size)
    if steps is not None:
        epochs = -(-steps // steps_per_epoch)
    total_steps = steps or epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps, pct_start=WARMUP)
    done = [0]

    def epoch_batches():
        drawn = (identity_batches(train_labels, batch_size, rng, steps_per_epoch) if loss == "triplet"
                 else batches(len(train), batch_size, rng, drop_last=True))
        for index in drawn:
            if done[0] >= total_steps:
                return
            done[0] += 1
            yield index

    def step(index: np.ndarray, steps_so_far: int):
        head.margin = margin * min(1.0, steps_so_far / (WARMUP * total_steps))
        x = to_tensor(augment(train.images[index], rng), spec, True, target)   # N,3,112,112
        return head(model(x), labels[torch.from_numpy(index).to(target)]), {"margin": f"{head.margin:.2f}"}

    clock = Clock(max_seconds)
    # Whole batches only: a last batch of one image would break BatchNorm's statistics.
    run = train_epochs("verifier", model, epochs=epochs, steps_per_epoch=steps_per_epoch,
                       images_per_epoch=steps_per_epoch * min(batch_size, len(train)),
                       batches=epoch_batches,
                       step=step, optimizer=optimizer, schedule=schedule, clock=clock)
    train_seconds = clock.elapsed

    # Pairs come from their own generator, so they do not depend on how many steps the run managed.
    metrics = evaluate_verifier(model, held, spec, target_far, np.random.default_rng([seed, 1]), batch_size,
                                channels_last=True)
    metrics.update({
        "final_train_loss": run.loss, "train_identities": len(train_ids),
        "holdout_identities": len(np.unique(held.labels)), "train_images": len(train), "holdout_images": len(held),
        "skipped_images": faces.skipped, "epochs": epochs, "epochs_run": round(run.steps / steps_per_epoch, 2),
        "stopped_early": run.stopped, "stopped_because": run.stopped_because,
        "train_seconds": round(train_seconds, 1), "seed": seed,
        "device": describe(target), "arcface_scale": scale, "arcface_margin": margin, "loss": loss,
        "steps": run.steps, "images_per_second": round(run.steps * batch_size / max(train_seconds, 1e-9), 1),
    })
    out = Path(out)
    model = model.to(memory_format=torch.contiguous_format)   # plain layout in the file, whatever loads it
    save_checkpoint(out, architecture=ARCHITECTURE, config=config, task="verify", model=model,
                    preprocessing=spec, metrics=metrics, threshold=metrics["threshold"])

    summary = (f"verifier: held-out accuracy {metrics['accuracy']:.2f} ({metrics['accuracy_protocol']}), "
               f"AUC {metrics['auc']:.2f}, EER {metrics['eer']:.2f}, threshold {metrics['threshold']:.2f} "
               f"at FAR {target_far:g}, checkpoint {out}")
    evaluation = ("accuracy", "accuracy_std", "accuracy_protocol", "auc", "eer", "eer_threshold", "target_far",
                  "threshold", "tar_at_far", "accuracy_at_threshold", "genuine_pairs", "impostor_pairs",
                  "genuine_mean", "impostor_mean", "holdout_identities", "holdout_images")
    report = write_report(
        outputs_next_to(out, "report.md"), "Verifier training report", summary, {
            "Held-out verification (identities never seen in training)": {k: metrics[k] for k in evaluation},
            "Training": {"data": str(faces.root), **{k: metrics[k] for k in (
                "train_identities", "train_images", "skipped_images", "epochs", "epochs_run", "stopped_early",
                "stopped_because",
                "train_seconds", "images_per_second", "steps", "final_train_loss", "loss", "arcface_scale",
                "arcface_margin")},
                "batch_size": batch_size, "lr": lr, "seed": seed, "threads": torch.get_num_threads()},
            "Model": {"architecture": ARCHITECTURE, **config,
                      "parameters": sum(p.numel() for p in model.parameters())},
            "Notes": ["Scores are cosine similarities of L2-normalised embeddings; a pair is accepted when its "
                      "score >= threshold. The threshold is the lowest one whose false-accept rate on the held-out "
                      "impostor pairs stays at or below target_far; with few impostor pairs it is coarse.",
                      "", f"- checkpoint: `{out}`", f"- command: `{command}`"],
        })
    return Result(metrics, out, report, summary)


def identity_batches(labels: np.ndarray, batch_size: int, rng: np.random.Generator, count: int):
    """``count`` batches of P identities x TRIPLET_K images each (drawn with replacement from an identity with fewer
    images), so that every face has positives and negatives in its batch for the triplet loss's mining."""
    by_identity = [np.nonzero(labels == k)[0] for k in np.unique(labels)]
    by_identity = [rows for rows in by_identity if len(rows) >= 2]
    per_batch = max(2, batch_size // TRIPLET_K)
    if len(by_identity) < 2:
        raise UserError("the triplet loss needs at least two identities with two or more images each")
    for _ in range(count):
        chosen = rng.choice(len(by_identity), min(per_batch, len(by_identity)), replace=False)
        yield np.concatenate([rng.choice(by_identity[i], TRIPLET_K, replace=len(by_identity[i]) < TRIPLET_K)
                              for i in chosen])


def check_verifier_options(embedding: int, width: float, holdout: float, target_far: float, margin: float,
                           scale: float) -> None:
    if embedding < 2:
        raise UserError(f"--embedding must be at least 2, got {embedding}")
    if width <= 0:
        raise UserError(f"--width must be positive, got {width}")
    if not 0 < holdout < 1:
        raise UserError(f"--holdout_identities must be between 0 and 1, got {holdout}")
    if not 0 < target_far < 1:
        raise UserError(f"--target_far must be between 0 and 1, got {target_far}")
    if not 0 <= margin < 1.5:
        raise UserError(f"--margin must be in [0, 1.5) radians, got {margin}")
    if scale <= 0:
        raise UserError(f"--scale must be positive, got {scale}")
