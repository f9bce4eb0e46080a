"""Trains the DCGAN and the conditional GAN at 64x64 and writes the generator's checkpoint, grids and report.

Adam at 2e-4 with beta1 0.5 for both networks, as the DCGAN paper; one discriminator step then one generator step
per batch, the non-saturating loss. A GAN has no held-out loss, so each epoch is scored on what matters downstream:
the share of a fixed batch of samples in which the runtime's detector finds a face, scaled down when the samples
collapse towards one face. The best epoch by that score is the one saved, the later one on a tie (the share
saturates while the faces still improve). The conditional GAN is
conditioned on the head pose (read from the detector's key points, so any face folder has it) or on the identity
folder.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from edge.base.errors import UserError
from edge.runtime.preprocess import generator_input_spec, output_to_images
from trainer.checkpoint import save_checkpoint
from trainer.data import FaceSet, batches, to_tensor
from trainer.device import describe
from trainer.face_pose import POSES, mirrored, read_poses
from trainer.generator_features import detected_share
from trainer.generator_run import Result, begin_run, leave_world
from trainer.loop import Extras, Validation, gradient_step, train_epochs
from trainer.models.dcgan import DCGANDiscriminator, DCGANGenerator
from trainer.report import Clock, image_grid, outputs_next_to, write_png, write_report
from trainer.run_state import RunState

CONDITIONS = ("pose", "folder")
FIXED_SAMPLES = 64        # the fixed batch each epoch is scored and drawn from
FINAL_SAMPLES = 256       # samples the final detector hit rate is measured on
GRID_COLUMNS = 8
BETAS = (0.5, 0.999)
MIN_SPREAD = 0.1          # sample spread (see spread()) below which an epoch's score is scaled down


@dataclass(frozen=True)
class Labels:
    values: np.ndarray          # per face, index into names
    names: list[str]
    dropped: int                # faces without a label (no face found when reading the pose)
    mirror: bool                # whether a horizontal flip changes the label (pose: left <-> right)


def condition_labels(faces: FaceSet, condition: str) -> Labels:
    if condition == "folder":
        if len(faces.names) < 2:
            raise UserError(f"--condition folder needs at least two identity folders in {faces.root}, found "
                            f"{len(faces.names)}; use --condition pose")
        return Labels(faces.labels, list(faces.names), 0, False)
    if condition == "pose":
        poses = read_poses(faces.images)
        return Labels(poses, list(POSES), int((poses < 0).sum()), True)
    raise UserError(f"--condition must be one of {', '.join(CONDITIONS)}, got {condition!r}")


def train_gan(data: str | Path, out: str | Path, *, family: str, epochs: int, batch_size: int, lr: float,
              latent: int, width: int, condition: str | None, seed: int = 0, max_seconds: float | None = None,
              threads: int | None = None, device: str = "auto", command: str = "", dedup_distance: int = 2,
              patience: int = 0, recipe: str = "", resume: Path | None = None,
              mixed_precision: str = "auto") -> Result:
    conditional = family == "cgan"
    if conditional and condition not in CONDITIONS:
        raise UserError(f"the conditional GAN needs condition={' or '.join(CONDITIONS)}, got {condition!r}")
    if width < 8:
        raise UserError(f"width must be at least 8, got {width}")
    rng, target, world, precision, faces, duplicates = begin_run(data, seed, threads, device, batch_size,
                                                                 mixed_precision, dedup_distance)
    spec = generator_input_spec()
    labels = condition_labels(faces, condition) if conditional else Labels(np.zeros(len(faces), np.int64), [], 0,
                                                                          False)
    keep = np.nonzero(labels.values >= 0)[0]
    if len(keep) < batch_size:
        raise UserError(f"{data}: {len(keep)} usable faces, fewer than one batch of {batch_size}")
    real = to_tensor(faces.images[keep], spec)                      # N,3,64,64 in [0, 1], decoded once
    real_labels = torch.from_numpy(labels.values[keep])
    classes = len(labels.names)
    prior = np.bincount(labels.values[keep], minlength=max(classes, 1)) / len(keep)   # fake labels drawn like real

    config = {"latent": latent, "width": width, "classes": classes, "input_size": spec.size[0]}
    generator = DCGANGenerator(**config).to(target)
    discriminator = DCGANDiscriminator(width, classes).to(target)
    g_optimizer = torch.optim.Adam(generator.parameters(), lr=lr, betas=BETAS)
    d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=BETAS)
    constant = torch.optim.lr_scheduler.LambdaLR(g_optimizer, lambda _: 1.0)
    g_train, d_train = world.wrap(generator), world.wrap(discriminator)     # DDP under torchrun
    bce = nn.BCEWithLogitsLoss()
    noise = torch.Generator().manual_seed(seed)

    def draw(count: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        z = torch.randn((count, latent), generator=noise)
        y = torch.from_numpy(rng.choice(len(prior), count, p=prior)) if conditional else None
        return z.to(target), (y.to(target) if y is not None else None)

    def step(index: np.ndarray, _steps: int):
        # every rank draws the whole batch's flips and latents alike, then takes its slice
        x, y = real[index].clone(), real_labels[index].clone()
        flip = torch.from_numpy(rng.random(len(index)) < 0.5)
        x[flip] = x[flip].flip(-1)                                  # a mirror image is a face too
        if labels.mirror:
            y[flip] = torch.from_numpy(mirrored(y[flip].numpy()))
        z, fake_y = (world.shard(t) if t is not None else None for t in draw(len(index)))
        x, y = world.shard(x).to(target), (world.shard(y).to(target) if conditional else None)
        fake = g_train(z, fake_y)
        real_logits, fake_logits = d_train(x, y), d_train(fake.detach(), fake_y)
        # one-sided label smoothing (0.9) keeps the discriminator from overconfidence on a small set
        d_loss = bce(real_logits, torch.full_like(real_logits, 0.9)) + bce(fake_logits, torch.zeros_like(fake_logits))
        gradient_step(d_loss, d_optimizer, precision)
        g_logits = d_train(fake, fake_y)
        return bce(g_logits, torch.ones_like(g_logits)), {"d": f"{d_loss.item():.3f}"}

    fixed_z, fixed_y = fixed_latents(latent, classes, seed)
    from edge.faces.packaged_detector import load_packaged_detector
    detector = load_packaged_detector()

    def samples(z=fixed_z, y=fixed_y) -> list[np.ndarray]:
        return generate(generator, z, y, spec)

    out = Path(out)
    clock = Clock(max_seconds)
    steps_per_epoch = len(keep) // batch_size
    run = train_epochs(
        family, generator, epochs=epochs, steps_per_epoch=steps_per_epoch,
        images_per_epoch=steps_per_epoch * batch_size,
        batches=lambda: batches(len(keep), batch_size, rng, drop_last=True), step=step, optimizer=g_optimizer,
        schedule=constant, clock=clock,
        validation=Validation(lambda: -judged_share(samples(), fixed_y, detector), patience,
                              outputs_next_to(out, "log.csv"),
                              lambda epoch: epoch_samples(samples(), epoch, out), ties_to_later=True),
        extras=Extras(RunState(outputs_next_to(out, "last.pt"), {"architecture": "dcgan_generator", "config": config},
                               {"generator": generator, "discriminator": discriminator, "g_optimizer": g_optimizer,
                                "d_optimizer": d_optimizer, "precision": precision}, rng, {"noise": noise}),
                      resume, precision, world))
    train_seconds = clock.elapsed
    if (elsewhere := leave_world(world, family, out)) is not None:
        return elsewhere

    final_z, final_y = fixed_latents(latent, classes, seed + 1, FINAL_SAMPLES)
    final = samples(final_z, final_y)
    metrics = {
        "family": family, "condition": condition if conditional else None, "class_names": labels.names,
        "class_share": [round(float(p), 4) for p in prior] if conditional else [],
        "faces_detected": round(detected_share(final, detector), 4), "samples_scored": FINAL_SAMPLES,
        "sample_spread": round(spread(final, final_y), 4),
        "train_images": len(keep), "unlabelled_dropped": labels.dropped, "skipped_images": faces.skipped,
        "near_duplicates_removed": len(duplicates), "epochs": epochs,
        "epochs_run": round(run.steps / steps_per_epoch, 2), "stopped_early": run.stopped,
        "stopped_because": run.stopped_because,
        "best_epoch": run.best_epoch, "train_seconds": round(train_seconds, 1),
        "images_per_second": round(run.steps * batch_size / max(train_seconds, 1e-9), 1),
        "seed": seed, "device": describe(target), "recipe": recipe or "arguments", "latent_prior": "normal",
        "processes": world.size, "mixed_precision": precision.name, "resumed_from": str(resume) if resume else None,
    }
    if conditional and condition == "pose":
        metrics["pose_agreement"] = round(pose_agreement(final, final_y.numpy(), detector), 4)
    save_checkpoint(out, architecture="dcgan_generator", config=config, task="generate", model=generator,
                    preprocessing=spec, metrics=metrics)
    outputs_next_to(out, "duplicates.txt").write_text("".join(f"{line}\n" for line in duplicates) or "none\n")
    grid = write_png(outputs_next_to(out, "samples.png"), class_grid(final, final_y, labels.names))
    summary = (f"{family}: a face detected in {100 * metrics['faces_detected']:.1f} % of {FINAL_SAMPLES} samples "
               f"(spread {metrics['sample_spread']:.3f})"
               + (f", pose as asked in {100 * metrics['pose_agreement']:.1f} %" if "pose_agreement" in metrics else "")
               + f", {metrics['images_per_second']:.0f} images/s, checkpoint {out}")
    report = write_report(outputs_next_to(out, "report.md"), f"{family.upper()} training report", summary, {
        "Samples": {k: metrics[k] for k in ("faces_detected", "sample_spread", "samples_scored", *(
            ["pose_agreement"] if "pose_agreement" in metrics else []))},
        "Training": {"data": str(faces.root), "condition": metrics["condition"], "classes": ", ".join(labels.names),
                     **{k: metrics[k] for k in ("train_images", "unlabelled_dropped", "skipped_images",
                                                "near_duplicates_removed", "epochs", "epochs_run", "stopped_early",
                                                "stopped_because",
                                                "best_epoch", "train_seconds", "images_per_second", "processes",
                                                "mixed_precision", "resumed_from")},
                     "batch_size": batch_size, "lr": lr, "betas": str(BETAS), "seed": seed},
        "Model": {"generator": "dcgan_generator", **{k: str(v) for k, v in config.items()},
                  "generator parameters": sum(p.numel() for p in generator.parameters()),
                  "discriminator parameters": sum(p.numel() for p in discriminator.parameters())},
        "Files": [f"- checkpoint: `{out}` (the generator of the epoch whose fixed samples the detector found most "
                  f"faces in; a CSV row per epoch in `{outputs_next_to(out, 'log.csv').name}`)",
                  f"- samples: `{grid.name}`" + (": one row per class, the same latents across rows"
                                                 if conditional else ""),
                  f"- command: `{command}`"],
    })
    return Result(metrics, out, report, grid, summary)


def fixed_latents(latent: int, classes: int, seed: int, count: int = FIXED_SAMPLES):
    """Latents from their own seeded stream, so that every epoch draws the same faces; conditional: each row of
    GRID_COLUMNS latents repeated once per class, so consecutive grid rows show the same latents under each label."""
    stream = torch.Generator().manual_seed(10_000 + seed)
    if not classes:
        return torch.randn((count, latent), generator=stream), None
    zs, ys = [], []
    while len(zs) * GRID_COLUMNS < count:
        row = torch.randn((GRID_COLUMNS, latent), generator=stream)
        for label in range(classes):
            zs.append(row)
            ys.append(torch.full((GRID_COLUMNS,), label, dtype=torch.int64))
    return torch.cat(zs)[:count], torch.cat(ys)[:count]


@torch.no_grad()
def generate(generator: nn.Module, z: torch.Tensor, y: torch.Tensor | None, spec) -> list[np.ndarray]:
    generator.eval()
    device = next(generator.parameters()).device
    out = generator(z.to(device), None if y is None else y.to(device)).cpu().numpy()
    generator.train()
    return output_to_images(out, spec)


def spread(images: list[np.ndarray], labels: torch.Tensor | None = None) -> float:
    """How different the samples are: the per-pixel standard deviation across them, averaged, in [0, 1] units
    (different real faces: about 0.2; a collapsed generator drawing one face: near 0); with labels, within each
    class (a conditional generator may collapse to one face per class)."""
    pixels = np.stack(images).astype(np.float32) / 255
    groups = [pixels] if labels is None else [pixels[labels.numpy() == k] for k in np.unique(labels.numpy())]
    return float(np.mean([group.std(axis=0).mean() for group in groups if len(group) > 1]))


def judged_share(images: list[np.ndarray], labels: torch.Tensor | None, detector) -> float:
    """An epoch's score: the detector's share, scaled down when the samples collapse towards one face (the
    detector alone also finds a "face" in every copy of one blob)."""
    return detected_share(images, detector) * min(1.0, spread(images, labels) / MIN_SPREAD)


def pose_agreement(images: list[np.ndarray], asked: np.ndarray, detector) -> float:
    """Among samples with a detected face, the share whose pose read back is the one asked for."""
    read = read_poses(images, detector)
    found = read >= 0
    return float(np.mean(read[found] == asked[found])) if found.any() else 0.0


def class_grid(images: list[np.ndarray], labels: torch.Tensor | None, names: list[str]) -> np.ndarray:
    """Rows of samples; conditional: two rounds of one row per class, each row labelled with its class."""
    count = 2 * len(names) if labels is not None else 4
    rows = [images[i:i + GRID_COLUMNS] for i in range(0, count * GRID_COLUMNS, GRID_COLUMNS)]
    grid = image_grid(rows)
    if labels is not None:
        row_height = grid.shape[0] / len(rows)
        for r in range(len(rows)):
            cv2.putText(grid, names[int(labels[r * GRID_COLUMNS])], (4, int(r * row_height) + 14),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return grid


def epoch_samples(images: list[np.ndarray], epoch: int, out: Path) -> Path:
    grid = image_grid([images[i:i + GRID_COLUMNS] for i in range(0, len(images), GRID_COLUMNS)][:4])
    cv2.putText(grid, f"epoch {epoch}", (4, grid.shape[0] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                cv2.LINE_AA)
    folder = outputs_next_to(out, "epochs")
    folder.mkdir(parents=True, exist_ok=True)
    return write_png(folder / f"epoch_{epoch:03d}.png", grid)
