"""Drawing new faces from any generator that decodes a latent: the autoencoder (the Gaussian fitted to its training
codes), the VAE and the GANs (a standard normal), a conditional GAN with a class per face.

One place answers "what latent does this checkpoint decode, and how": eval-generator's samples and interpolation
grids, compile's latent-input export and its calibration latents, and ``trainer synth`` all use it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from edge.runtime.preprocess import output_to_images

SAMPLING_ARCHITECTURES = ("conv_autoencoder", "conv_vae", "dcgan_generator")


@dataclass(frozen=True)
class LatentPrior:
    """Where a generator's latents come from: a per-dimension Gaussian, and classes for a conditional GAN."""

    mean: np.ndarray
    std: np.ndarray
    classes: int = 0
    class_names: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return len(self.mean)

    def draw(self, count: int, rng: np.random.Generator, label: int | None = None):
        """(latents N,size float32, labels N int64 or None): labels cycle over the classes unless one is given."""
        z = rng.normal(self.mean, self.std, (count, self.size)).astype(np.float32)
        if not self.classes:
            return z, None
        labels = np.full(count, label) if label is not None else np.arange(count) % self.classes
        return z, labels.astype(np.int64)


def latent_prior(checkpoint) -> LatentPrior | None:
    """The prior a checkpoint's generator samples from; None when it does not sample (the face swap)."""
    if checkpoint.architecture not in SAMPLING_ARCHITECTURES:
        return None
    size = int(checkpoint.config["latent"])
    if checkpoint.architecture == "conv_autoencoder" and "latent_mean" in checkpoint.metrics:
        return LatentPrior(np.asarray(checkpoint.metrics["latent_mean"], np.float32),
                           np.asarray(checkpoint.metrics["latent_std"], np.float32))
    classes = int(checkpoint.config.get("classes", 0))
    return LatentPrior(np.zeros(size, np.float32), np.ones(size, np.float32), classes,
                       tuple(checkpoint.metrics.get("class_names", ())))


@torch.no_grad()
def decode(model: torch.nn.Module, z: np.ndarray, labels: np.ndarray | None = None,
           batch_size: int = 64) -> np.ndarray:
    """Latents (and labels) -> the model's output images N,3,H,W in the generator spec's range, in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    rows = []
    for start in range(0, len(z), batch_size):
        latents = torch.from_numpy(z[start:start + batch_size]).to(device)
        if labels is None:
            rows.append(model.decode(latents).cpu().numpy())
        else:
            rows.append(model.decode(latents, torch.from_numpy(labels[start:start + batch_size]).to(device))
                        .cpu().numpy())
    return np.concatenate(rows)


def sample_images(model: torch.nn.Module, prior: LatentPrior, count: int, spec, rng: np.random.Generator,
                  label: int | None = None) -> list[np.ndarray]:
    """``count`` new faces as BGR uint8 images."""
    z, labels = prior.draw(count, rng, label)
    return output_to_images(decode(model, z, labels), spec)


def interpolation_rows(model: torch.nn.Module, prior: LatentPrior, spec, rng: np.random.Generator, rows: int = 4,
                       steps: int = 8) -> list[list[np.ndarray]]:
    """Each row walks from one drawn latent to another (spherically around the prior's mean, so the middle of the
    walk keeps a typical distance from it instead of shrinking towards the mean face)."""
    grid = []
    for row in range(rows):
        (start, end), labels = prior.draw(2, rng)
        a, b = (start - prior.mean) / prior.std, (end - prior.mean) / prior.std
        omega = np.arccos(np.clip(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)), -1, 1))
        t = np.linspace(0, 1, steps)[:, None]
        if omega < 1e-6:
            walk = (1 - t) * a + t * b
        else:
            walk = (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)
        z = (walk * prior.std + prior.mean).astype(np.float32)
        label = None if labels is None else np.full(steps, row % prior.classes, np.int64)
        grid.append(output_to_images(decode(model, z, label), spec))
    return grid
