"""Trains the autoencoder families (``conv_autoencoder``, ``conv_vae``) and writes the checkpoint, samples and
report."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from edge.base.errors import UserError
from edge.runtime.preprocess import generator_input_spec, output_to_images
from trainer.checkpoint import save_checkpoint
from trainer.data import augment, batches, split_images, to_tensor
from trainer.device import describe, device_of
from trainer.evaluate import reconstruct, reconstruction_metrics
from trainer.generator_run import HOLDOUT, Result, begin_run, check_options, leave_world
from trainer.image_losses import reconstruction_loss
from trainer.loop import Extras, Validation, train_epochs
from trainer.models import build_model
from trainer.models.autoencoder import ConvAutoencoder, ConvVAE, kl_divergence
from trainer.report import Clock, image_grid, outputs_next_to, write_png, write_report
from trainer.run_state import RunState
from trainer.sampling import LatentPrior, sample_images
from trainer.stacked import pretrain_layerwise

ARCHITECTURES = {"autoencoder": "conv_autoencoder", "vae": "conv_vae"}     # --family -> architecture
COLOURS = {"rgb": "RGB", "grey": "GREY"}                                   # setting -> the input spec's colour
SAMPLE_COUNT = 8       # columns in the sample grid


NOISE_KINDS = ("gaussian", "mask")   # denoising: Gaussian noise of this std, or this share of pixels zeroed


def parse_noise(text: str | None) -> tuple[str, float] | None:
    """``gaussian:0.1`` or ``mask:0.25`` -> (kind, amount); None for no noise."""
    if not text:
        return None
    kind, _, amount = text.partition(":")
    try:
        value = float(amount)
    except ValueError:
        value = -1.0
    if kind not in NOISE_KINDS or not 0 < value < 1:
        raise UserError(f"--noise takes KIND:AMOUNT with KIND in {NOISE_KINDS} and AMOUNT between 0 and 1 "
                        f"(gaussian:0.1, mask:0.25), got {text!r}")
    return kind, value


def corrupt(x: torch.Tensor, noise: tuple[str, float] | None, generator: torch.Generator) -> torch.Tensor:
    """The denoising autoencoder's input: ``x`` with Gaussian noise added or pixels masked (all channels)."""
    if noise is None:
        return x
    kind, amount = noise
    if kind == "gaussian":
        return (x + amount * torch.randn(x.shape, generator=generator, device=x.device)).clamp(0, 1)
    keep = torch.rand((x.shape[0], 1, *x.shape[2:]), generator=generator, device=x.device) >= amount
    return x * keep


def train_autoencoder(data: str | Path, out: str | Path, *, epochs: int = 30, batch_size: int = 32, lr: float = 2e-3,
                      seed: int = 0, max_seconds: float | None = None, threads: int | None = None,
                      latent: int = 32, device: str = "auto", command: str = "", noise: str | None = None,
                      sparsity: float = 0.0, family: str = "autoencoder", beta: float = 1.0,
                      ssim_weight: float = 0.0, dedup_distance: int = 2, patience: int = 0,
                      recipe: str = "", resume: Path | None = None, mixed_precision: str = "auto",
                      channels: list[int] | None = None, colour: str = "rgb", stacked_epochs: int = 0) -> Result:
    """The plain autoencoder, its denoising (``noise``) and sparse (``sparsity``: L1 weight on the code) variants,
    or the VAE (``family="vae"``, ``beta`` weighting its KL term); each recorded in the checkpoint's metrics. The
    autoencoders take their encoder widths (``channels``: one stride-2 layer each), ``colour`` (rgb or grey) and,
    with ``stacked_epochs``, greedy layer-wise pre-training first (trainer.stacked)."""
    check_options(epochs, batch_size, lr, max_seconds)
    if beta < 0:
        raise UserError(f"--beta must be 0 or more, got {beta}")
    if not 0 <= ssim_weight <= 1:
        raise UserError(f"--ssim_weight must be between 0 and 1, got {ssim_weight}")
    architecture = ARCHITECTURES[family]
    corruption = parse_noise(noise)
    if sparsity < 0:
        raise UserError(f"--sparsity must be 0 or more, got {sparsity}")
    if colour not in COLOURS:
        raise UserError(f"colour must be one of {', '.join(COLOURS)}, got {colour!r}")
    channels = channels or [16, 32, 64]
    if 64 % 2 ** len(channels):
        raise UserError(f"channels lists {len(channels)} stride-2 layers; a 64x64 face allows at most 6")
    rng, target, world, precision, faces, duplicates = begin_run(data, seed, threads, device, batch_size,
                                                                 mixed_precision, dedup_distance)
    spec = generator_input_spec(colour=COLOURS[colour])
    train_index, held_index = split_images(len(faces), HOLDOUT, rng)
    train_images, held_images = faces.images[train_index], faces.images[held_index]

    config = {"channels": channels, "latent": latent, "input_size": spec.size[0], "in_channels": spec.shape[1]}
    model = build_model(architecture, config).to(target)
    pretrained = (pretrain_layerwise(model, train_images, spec, stacked_epochs, batch_size, lr, rng, target)
                  if stacked_epochs and resume is None else [])
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = -(-len(train_images) // batch_size)
    # Cosine decay to zero over the planned run: the last epochs refine detail at a small step size.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)

    noise_stream = torch.Generator(device=target).manual_seed(seed)
    training_pass = world.wrap(TrainingPass(model))

    def step(index: np.ndarray, _steps: int):
        # the whole batch is augmented and corrupted on every rank (the same draws), then each takes its slice
        x = to_tensor(augment(train_images[index], rng), spec, device=target)  # N,3,64,64 in [0,1]
        noisy = world.shard(corrupt(x, corruption, noise_stream))
        x = world.shard(x)
        decoded, code, kl = training_pass(noisy)                             # code N,32 (a VAE: a sample)
        loss = reconstruction_loss(decoded, x, ssim_weight)                  # the clean face is the target
        if kl is not None:
            # per-pixel reconstruction error, so the KL term is scaled to one pixel too
            loss = loss + beta * kl / x[0].numel()
        return loss + sparsity * code.abs().mean(), {}

    def held_out_loss() -> float:
        inputs, outputs = reconstruct(model, held_images, spec, batch_size)
        return float(np.mean((outputs - inputs) ** 2))

    out = Path(out)
    clock = Clock(max_seconds)
    state = RunState(outputs_next_to(out, "last.pt"), {"architecture": architecture, "config": config},
                     {"model": model, "optimizer": optimizer, "schedule": schedule, "precision": precision}, rng,
                     {"noise": noise_stream})
    run = train_epochs("generator", model, epochs=epochs, steps_per_epoch=steps_per_epoch,
                       images_per_epoch=len(train_images),
                       batches=lambda: batches(len(train_images), batch_size, rng, drop_last=world.distributed),
                       step=step, optimizer=optimizer, schedule=schedule, clock=clock,
                       validation=Validation(held_out_loss, patience, outputs_next_to(out, "log.csv"),
                                             lambda epoch: epoch_grid(model, held_images, spec, epoch, out)),
                       extras=Extras(state, resume, precision, world))
    train_seconds = clock.elapsed
    if (elsewhere := leave_world(world, "generator", out)) is not None:
        return elsewhere

    inputs, outputs = reconstruct(model, held_images, spec, batch_size)
    latents = encode_all(model, train_images, spec, batch_size)
    metrics = {
        **reconstruction_metrics(inputs, outputs),
        "final_train_loss": run.loss,
        "train_images": len(train_images), "holdout_images": len(held_images), "skipped_images": faces.skipped,
        "epochs": epochs, "epochs_run": round(run.steps / steps_per_epoch, 2), "stopped_early": run.stopped,
        "stopped_because": run.stopped_because,
        "train_seconds": round(train_seconds, 1), "seed": seed, "device": describe(target),
        "images_per_second": round(run.steps * batch_size / max(train_seconds, 1e-9), 1),
        "processes": world.size, "mixed_precision": precision.name, "resumed_from": str(resume) if resume else None,
        # Sampling new faces decodes latents drawn from this per-dimension Gaussian fitted to training faces.
        "latent_mean": latents.mean(axis=0).tolist(), "latent_std": latents.std(axis=0).tolist(),
        "family": family, "beta": beta if family == "vae" else None,
        "variant": " + ".join(v for v, on in (("stacked", stacked_epochs), ("denoising", corruption),
                                              ("sparse", sparsity)) if on) or "plain",
        "stacked_epochs": stacked_epochs, "stacked_layer_losses": pretrained, "colour": colour,
        "noise": noise or "none", "sparsity": sparsity, "ssim_weight": ssim_weight,
        "near_duplicates_removed": len(duplicates), "dedup_distance_bits": dedup_distance,
        "best_epoch": run.best_epoch, "patience": patience, "recipe": recipe or "arguments",
        "code_mean_abs": round(float(np.abs(latents).mean()), 5),   # what the sparsity penalty pushes down
    }
    save_checkpoint(out, architecture=architecture, config=config, task="generate", model=model,
                    preprocessing=spec, metrics=metrics)

    duplicates_file = outputs_next_to(out, "duplicates.txt")
    duplicates_file.write_text("".join(f"{line}\n" for line in duplicates) or "none\n")
    samples = write_png(outputs_next_to(out, "samples.png"), sample_grid(model, inputs, outputs, latents, spec, rng))
    summary = (f"generator: held-out PSNR {metrics['psnr']:.1f} dB (MSE {metrics['mse']:.4f}), "
               f"checkpoint {out}")
    report = write_report(
        outputs_next_to(out, "report.md"), "Generator training report", summary, {
            "Held-out reconstruction": {k: metrics[k] for k in ("psnr", "mse", "holdout_images")},
            "Training": {"data": str(faces.root), "identities": len(faces.names), "recipe": metrics["recipe"],
                         "variant": metrics["variant"], "colour": colour,
                         "stacked pre-training": (f"{stacked_epochs} epochs per layer, last losses {pretrained}"
                                                  if pretrained else "none"),
                         "noise": metrics["noise"], "sparsity": sparsity, "ssim_weight": ssim_weight,
                         "near-duplicates removed": f"{len(duplicates)} (within {dedup_distance} bits of a "
                                                    f"difference hash: {duplicates_file.name})",
                         **{k: metrics[k] for k in ("train_images", "skipped_images", "epochs", "epochs_run",
                                                    "stopped_early",
                                                    "stopped_because", "train_seconds", "images_per_second",
                                                    "final_train_loss", "best_epoch", "patience", "processes",
                                                    "mixed_precision", "resumed_from")},
                         "batch_size": batch_size, "lr": lr, "seed": seed, "threads": torch.get_num_threads()},
            "Model": {"architecture": architecture, **{k: str(v) for k, v in config.items()},
                      "parameters": sum(p.numel() for p in model.parameters())},
            "Files": [f"- checkpoint: `{out}` (the epoch with the lowest held-out loss; one CSV row per epoch in "
                      f"`{outputs_next_to(out, 'log.csv').name}`; `{state.path.name}` resumes the run with "
                      "`--resume`)",
                      f"- samples: `{samples.name}`: held-out originals (top), their reconstructions (middle), "
                      "faces decoded from random latents (bottom)",
                      f"- command: `{command}`"],
        })
    return Result(metrics, out, report, samples, summary)


class TrainingPass(torch.nn.Module):
    """An autoencoder's training forward pass as one module call, so that DDP sees it and averages its gradients:
    (reconstruction, code, the VAE's KL term or None)."""

    def __init__(self, model: ConvAutoencoder):
        super().__init__()
        self.model = model

    def forward(self, noisy: torch.Tensor):
        if isinstance(self.model, ConvVAE):
            mean, log_var = self.model.statistics(noisy)
            code = self.model.sample(mean, log_var)
            return self.model.decode(code), code, kl_divergence(mean, log_var)
        code = self.model.encode(noisy)
        return self.model.decode(code), code, None


def epoch_grid(model, held_images: np.ndarray, spec, epoch: int, out: Path) -> Path:
    """The same held-out faces (top) and their reconstructions after ``epoch`` (bottom), labelled with the epoch,
    in ``<out>_epochs/``: how training went, at a glance."""
    faces = held_images[:SAMPLE_COUNT]
    inputs, outputs = reconstruct(model, faces, spec)
    grid = image_grid([output_to_images(inputs, spec), output_to_images(outputs, spec)])
    cv2.putText(grid, f"epoch {epoch}", (4, grid.shape[0] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                cv2.LINE_AA)
    folder = outputs_next_to(out, "epochs")
    folder.mkdir(parents=True, exist_ok=True)
    return write_png(folder / f"epoch_{epoch:03d}.png", grid)


@torch.no_grad()
def encode_all(model: ConvAutoencoder, images: np.ndarray, spec, batch_size: int) -> np.ndarray:
    model.eval()
    device = device_of(model)
    return torch.cat([model.encode(to_tensor(images[i], spec, device=device)).cpu()
                      for i in batches(len(images), batch_size)]).numpy()


def sample_grid(model: ConvAutoencoder, inputs: np.ndarray, outputs: np.ndarray, latents: np.ndarray, spec,
                rng: np.random.Generator) -> np.ndarray:
    count = min(SAMPLE_COUNT, len(inputs))
    # a VAE samples its standard normal prior; an autoencoder the Gaussian fitted to its training codes
    size = latents.shape[1]
    prior = (LatentPrior(np.zeros(size, np.float32), np.ones(size, np.float32)) if isinstance(model, ConvVAE)
             else LatentPrior(latents.mean(axis=0), latents.std(axis=0)))
    return image_grid([output_to_images(inputs[:count], spec), output_to_images(outputs[:count], spec),
                       sample_images(model, prior, SAMPLE_COUNT, spec, rng)])
