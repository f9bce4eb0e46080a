"""Which trainer trains each generator family (a recipe's ``family``): a registry, not an ``if`` chain.

Every family's trainer takes the shared run settings (data, epochs, batch size, learning rate, seed, ...) and the
family's own. A family-specific setting given to a family that does not read it is refused, naming whom it is for,
rather than ignored.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge.base.errors import UserError
from edge.base.registry import Registry
from trainer.generator_run import Result

TRAINERS = Registry("generator family", {
    "autoencoder": "trainer.train_autoencoder:train_autoencoder",
    "vae": "trainer.train_autoencoder:train_autoencoder",
    "dcgan": "trainer.train_gan:train_gan",
    "cgan": "trainer.train_gan:train_gan",
    "faceswap": "trainer.train_faceswap:train_faceswap",
})
SHARED = ("epochs", "batch_size", "lr", "seed", "max_seconds", "threads", "latent", "device", "command",
          "dedup_distance", "patience", "recipe", "resume", "mixed_precision")
AUTOENCODER = ("family", "noise", "sparsity", "beta", "ssim_weight", "channels", "colour", "stacked_epochs")
GAN = ("family", "width", "condition")
OWN = {"autoencoder": AUTOENCODER, "vae": AUTOENCODER, "dcgan": GAN, "cgan": GAN,
       "faceswap": ("swap_with", "ssim_weight")}


@dataclass(frozen=True)
class Specific:
    """A setting only some families read: its value when unused, and whom it is for (for the refusal)."""

    unused: object
    owner: str


SPECIFIC = {"noise": Specific(None, "the autoencoders"), "sparsity": Specific(0.0, "the autoencoders"),
            "ssim_weight": Specific(0.0, "the autoencoders and the face swap"),
            "channels": Specific([16, 32, 64], "the autoencoders"), "colour": Specific("rgb", "the autoencoders"),
            "stacked_epochs": Specific(0, "the autoencoders"), "beta": Specific(1.0, "the VAE"),
            "width": Specific(64, "the GANs"), "condition": Specific(None, "the conditional GAN"),
            "swap_with": Specific(None, "the face swap (--config faceswap)")}


def train_generator(data: str | Path, out: str | Path, *, family: str = "autoencoder", **settings) -> Result:
    """Trains ``family`` with its trainer; ``settings`` are the shared ones plus any family's own."""
    trainer = TRAINERS.get(family)
    for name, value in settings.items():
        if name in SPECIFIC and name not in OWN[family] and value not in (None, SPECIFIC[name].unused):
            raise UserError(f"--{name} is for {SPECIFIC[name].owner}, not {family}")
    unknown = sorted(set(settings) - set(SHARED).union(*OWN.values()))
    if unknown:
        raise TypeError(f"train_generator takes no setting {unknown[0]!r}")
    own = {name: value for name, value in settings.items() if name in SHARED or name in OWN[family]}
    if "family" in OWN[family]:
        own["family"] = family
    return trainer(data, out, **own)
