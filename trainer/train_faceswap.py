"""Trains the face-swap autoencoder on two people's aligned faces and measures the swap with a face verifier.

Each step rebuilds a batch of A's faces through A's decoder and a batch of B's through B's, from inputs warped a
little (rotation, scale, shift): the decoders must then draw the person's face from a code that does not copy
pixels. The measurement the issue asks for: over A's held-out faces, how often the verifier places swap(A -> B)
nearer to B (the centroid of B's training faces) than to A; and the same the other way.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch

from edge.base.errors import UserError
from edge.runtime.preprocess import generator_input_spec, output_to_images, prepare_batch
from trainer.checkpoint import save_checkpoint
from trainer.data import augment, load_faces, split_images, to_tensor
from trainer.device import describe
from trainer.evaluate import reconstruct, reconstruction_metrics
from trainer.generator_features import embed, feature_network
from trainer.generator_run import HOLDOUT, Result, begin_run, leave_world, without_near_duplicates
from trainer.image_losses import reconstruction_loss
from trainer.loop import Extras, Validation, train_epochs
from trainer.models.autoencoder import FaceSwapAutoencoder
from trainer.report import Clock, image_grid, outputs_next_to, write_png, write_report
from trainer.run_state import RunState

MIN_FACES = 16              # per person, to train at all
ENOUGH_FACES = 200          # per person, below which the swap is a smoke test and the run says so
WARP = (10.0, 0.05, 0.05)   # random rotation (degrees), scale and shift (share of the side) of the inputs
GRID_COLUMNS = 8


def random_warp(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image rotated, scaled and shifted by a small random amount (border pixels repeated)."""
    n = x.shape[0]
    degrees, scale, shift = WARP
    u = torch.rand((n, 4), generator=generator, device=x.device) * 2 - 1
    angle, size = u[:, 0] * math.radians(degrees), 1 + u[:, 1] * scale
    cos, sin = torch.cos(angle) / size, torch.sin(angle) / size
    theta = torch.stack([torch.stack([cos, -sin, u[:, 2] * 2 * shift], 1),
                         torch.stack([sin, cos, u[:, 3] * 2 * shift], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, padding_mode="border", align_corners=False)


def train_faceswap(data: str | Path, out: str | Path, *, swap_with: str | Path | None, epochs: int, batch_size: int,
                   lr: float, latent: int, ssim_weight: float, seed: int = 0, max_seconds: float | None = None,
                   threads: int | None = None, device: str = "auto", command: str = "", dedup_distance: int = 2,
                   patience: int = 0, recipe: str = "", resume: Path | None = None,
                   mixed_precision: str = "auto") -> Result:
    if swap_with is None:
        raise UserError("a face swap needs two people: --data PERSON_A --swap_with PERSON_B (folders of aligned "
                        "crops of one person each, e.g. from edge align --src video.mp4)")
    if Path(swap_with).resolve() == Path(data).resolve():
        raise UserError(f"--swap_with {swap_with} is --data itself: a face swap needs two different people")
    rng, target, world, precision, faces_a, dropped_a = begin_run(data, seed, threads, device, batch_size,
                                                                  mixed_precision, dedup_distance, one_person=True)
    faces_b, dropped_b = without_near_duplicates(load_faces(swap_with, one_person=True), dedup_distance)
    for name, faces in (("--data", faces_a), ("--swap_with", faces_b)):
        if len(faces) < MIN_FACES:
            raise UserError(f"{name} {faces.root} holds {len(faces)} usable faces; a face swap needs at least "
                            f"{MIN_FACES} per person (hundreds for a good one)")
        if len(faces) < ENOUGH_FACES:
            print(f"faceswap: {faces.root} holds {len(faces)} faces; a convincing swap needs hundreds per person "
                  "(a video's frames): treat this run as a smoke test", file=sys.stderr)
    spec = generator_input_spec()
    people = []
    for faces in (faces_a, faces_b):
        train, held = split_images(len(faces), HOLDOUT, rng)
        people.append((faces.images[train], faces.images[held]))
    config = {"channels": [32, 64, 128], "latent": latent, "input_size": spec.size[0], "people": 2, "swap_to": 1}
    model = FaceSwapAutoencoder(**config).to(target)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    half = batch_size // 2
    steps_per_epoch = max(len(train) for train, _ in people) // half
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    warp_stream = torch.Generator(device=target).manual_seed(seed)
    training_pass = world.wrap(SwapTrainingPass(model))

    def person_batches():
        # one epoch: as many half-batches as the larger person's faces fill; the smaller person's repeat
        for _ in range(steps_per_epoch):
            yield np.concatenate([rng.choice(len(train), half, replace=len(train) < half) for train, _ in people])

    def step(index: np.ndarray, _steps: int):
        # index: A's half of the batch, then B's
        clean = [to_tensor(augment(train[rows], rng), spec, device=target)
                 for (train, _), rows in zip(people, (index[:half], index[half:]))]
        warped = [world.shard(random_warp(x, warp_stream)) for x in clean]
        rebuilt = training_pass(*warped)
        return sum(reconstruction_loss(r, world.shard(x), ssim_weight) for r, x in zip(rebuilt, clean)) / 2, {}

    def held_out_loss() -> float:
        return float(np.mean([np.mean((o - i) ** 2) for i, o in (own_reconstruction(model, held, person, spec)
                                                                  for person, (_, held) in enumerate(people))]))

    out = Path(out)
    clock = Clock(max_seconds)
    state = RunState(outputs_next_to(out, "last.pt"), {"architecture": "faceswap_autoencoder", "config": config},
                     {"model": model, "optimizer": optimizer, "schedule": schedule, "precision": precision}, rng,
                     {"warp": warp_stream})
    run = train_epochs("faceswap", model, epochs=epochs, steps_per_epoch=steps_per_epoch,
                       images_per_epoch=steps_per_epoch * 2 * half, batches=person_batches, step=step,
                       optimizer=optimizer, schedule=schedule, clock=clock,
                       validation=Validation(held_out_loss, patience, outputs_next_to(out, "log.csv"),
                                             lambda epoch: swap_grid(model, people, spec, out, epoch)),
                       extras=Extras(state, resume, precision, world))
    train_seconds = clock.elapsed
    if (elsewhere := leave_world(world, "faceswap", out)) is not None:
        return elsewhere

    metrics = {"family": "faceswap", "people": [str(faces_a.root), str(faces_b.root)],
               "faces": [len(faces_a), len(faces_b)],
               "near_duplicates_removed": len(dropped_a) + len(dropped_b), "epochs": epochs,
               "epochs_run": round(run.steps / steps_per_epoch, 2), "stopped_early": run.stopped,
               "stopped_because": run.stopped_because,
               "best_epoch": run.best_epoch, "train_seconds": round(train_seconds, 1),
               "images_per_second": round(run.steps * 2 * half / max(train_seconds, 1e-9), 1), "seed": seed,
               "device": describe(target), "processes": world.size, "mixed_precision": precision.name,
               "recipe": recipe or "arguments", "ssim_weight": ssim_weight,
               "resumed_from": str(resume) if resume else None}
    for person, (_, held) in zip("ab", people):
        inputs, outputs = own_reconstruction(model, held, "ab".index(person), spec)
        metrics[f"psnr_{person}"] = reconstruction_metrics(inputs, outputs)["psnr"]
    metrics.update(swap_scores(model, people, spec))
    save_checkpoint(out, architecture="faceswap_autoencoder", config=config, task="generate", model=model,
                    preprocessing=spec, metrics=metrics)
    grid = swap_grid(model, people, spec, out)
    towards = metrics.get("swap_a_to_b_nearer_b")
    summary = (f"faceswap: held-out PSNR A {metrics['psnr_a']:.1f} dB, B {metrics['psnr_b']:.1f} dB; "
               + (f"swap(A->B) nearer B in {100 * towards:.1f} % of A's held-out faces ({metrics['swap_features']})"
                  if towards is not None else f"swap not scored: {metrics['swap_unscored']}")
               + f"; checkpoint {out}")
    report = write_report(outputs_next_to(out, "report.md"), "Face-swap training report", summary, {
        "Swap": {k: v for k, v in metrics.items() if k.startswith(("swap", "real_", "psnr"))},
        "Training": {k: metrics[k] for k in ("people", "faces", "near_duplicates_removed", "epochs", "epochs_run",
                                             "stopped_early",
                                             "stopped_because", "best_epoch", "train_seconds", "images_per_second",
                                             "processes", "mixed_precision", "recipe", "ssim_weight")},
        "Model": {"architecture": "faceswap_autoencoder", **{k: str(v) for k, v in config.items()},
                  "parameters": sum(p.numel() for p in model.parameters())},
        "Files": [f"- checkpoint: `{out}` (exports the swap into person B; its config's swap_to picks the decoder)",
                  f"- `{grid.name}`: A's held-out faces, A rebuilt, A swapped to B; then the same for B",
                  f"- command: `{command}`"],
    })
    return Result(metrics, out, report, grid, summary)


class SwapTrainingPass(torch.nn.Module):
    """Each person's warped faces through the shared encoder and their own decoder, as one module call (for DDP)."""

    def __init__(self, model: FaceSwapAutoencoder):
        super().__init__()
        self.model = model

    def forward(self, *faces: torch.Tensor) -> list[torch.Tensor]:
        return [self.model.decode(self.model.encode(x), person) for person, x in enumerate(faces)]


class _Through(torch.nn.Module):
    """``model`` with its encoder and the decoder of ``person``: a reconstructing module for trainer.evaluate."""

    def __init__(self, model: FaceSwapAutoencoder, person: int):
        super().__init__()
        self.model, self.person = model, person

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.decode(self.model.encode(x), self.person)


def own_reconstruction(model: FaceSwapAutoencoder, images: np.ndarray, person: int, spec):
    return reconstruct(_Through(model, person), images, spec)


def swapped(model: FaceSwapAutoencoder, images: np.ndarray, to_person: int, spec) -> list[np.ndarray]:
    return output_to_images(reconstruct(_Through(model, to_person), images, spec)[1], spec)


def swap_scores(model: FaceSwapAutoencoder, people, spec) -> dict:
    """How often the verifier places swap(A -> B) nearer B's centroid than A's (and B -> A nearer A), over each
    person's held-out faces; beside it, how often it places the real held-out faces nearer their own person (what
    the verifier can tell apart at all at this size)."""
    try:
        extractor, name = feature_network(None)
    except UserError as err:
        return {"swap_unscored": str(err)}

    def unit(images):
        vectors = embed(extractor, list(images))
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def centroid(images):
        mean = unit(at_model_size(images, spec)).mean(axis=0)
        return mean / np.linalg.norm(mean)

    centres = [centroid(train) for train, _ in people]
    scores = {"swap_features": name}
    for source, target_person, label in ((0, 1, "a_to_b"), (1, 0, "b_to_a")):
        held = people[source][1]
        swaps = unit(swapped(model, held, target_person, spec))
        scores[f"swap_{label}_nearer_{'ab'[target_person]}"] = round(float(np.mean(
            swaps @ centres[target_person] > swaps @ centres[source])), 4)
        real = unit(at_model_size(held, spec))
        scores[f"real_{'ab'[source]}_nearer_own"] = round(float(np.mean(
            real @ centres[source] > real @ centres[target_person])), 4)
    return scores


def at_model_size(images: np.ndarray, spec) -> list[np.ndarray]:
    """Real faces as the model's inputs see them (64x64), so that they are embedded like its outputs."""
    return output_to_images(prepare_batch(images, spec), spec)


def swap_grid(model: FaceSwapAutoencoder, people, spec, out: Path, epoch: int | None = None) -> Path:
    rows = []
    for person, (_, held) in enumerate(people):
        faces = held[:GRID_COLUMNS]
        inputs, own = own_reconstruction(model, faces, person, spec)
        rows += [output_to_images(inputs, spec), output_to_images(own, spec), swapped(model, faces, 1 - person, spec)]
    grid = image_grid(rows)
    if epoch is None:
        return write_png(outputs_next_to(out, "swaps.png"), grid)
    folder = outputs_next_to(out, "epochs")
    folder.mkdir(parents=True, exist_ok=True)
    return write_png(folder / f"epoch_{epoch:03d}.png", grid)
