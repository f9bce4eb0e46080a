"""Generators compiled from a latent: the decoder of an autoencoder or a VAE, a GAN's generator, a conditional
GAN's generator with its class as one-hot numbers after the latent.

The device samples new faces through these files (``python -m edge generate``). Each becomes its own model role
(``generator_decoder``: files ``generator_decoder.int8.onnx`` ...) with a latent input (layout ``NC``) and the
project's generator image output (edge.runtime.preprocess.generator_input_spec: NCHW, RGB, [0, 1]). Its held-out inputs:
for an autoencoder or VAE, the codes its encoder gives the held-out faces, so the gate holds each file to the
held-out reconstruction PSNR/SSIM drop like the reconstructing graph; for a GAN, latents drawn from its prior,
gated on agreement with the FP32 model's faces.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from edge.runtime.manifest import InputSpec
from edge.runtime.preprocess import prepare_batch
from trainer.sampling import latent_prior

LATENT_INPUT = "latent"
SEEDS = {"calibration": 1, "held_out": 2}     # the prior's draws for each use


class LatentDecoder(nn.Module):
    """One float input N,(latent [+ classes]) -> faces N,3,H,W in [0, 1]."""

    def __init__(self, model: nn.Module, conditional: bool):
        super().__init__()
        self.model, self.conditional = model, conditional

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.model.from_code(code) if self.conditional else self.model.decode(code)


def latent_spec(size: int) -> InputSpec:
    return InputSpec(name=LATENT_INPUT, shape=(1, size), layout="NC", dtype="float32", colour="RGB",
                     mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), crop="none")


def decoder_source(source, checkpoint):
    """The latent-input SourceModel for a checkpoint that samples (compile.bundle.SourceModel), or None."""
    prior = latent_prior(checkpoint)
    if prior is None:
        return None
    conditional = prior.classes > 0
    model = checkpoint.build_model()
    decoder = LatentDecoder(model.fold_batchnorm() if hasattr(model, "fold_batchnorm") else model, conditional).eval()
    image_spec = checkpoint.preprocessing
    encoder = getattr(decoder.model, "encode", None)

    def feeds(images: list[np.ndarray], purpose: str) -> tuple[np.ndarray, np.ndarray | None]:
        if encoder is not None:
            targets = prepare_batch(images, image_spec)
            with torch.no_grad():
                return encoder(torch.from_numpy(targets)).numpy(), targets
        z, labels = prior.draw(len(images), np.random.default_rng(SEEDS[purpose]))
        if conditional:
            z = np.concatenate([z, np.eye(prior.classes, dtype=np.float32)[labels]], axis=1)
        return z, None

    extra = {"latent": {"size": prior.size, "classes": prior.classes, "class_names": list(prior.class_names),
                        "mean": prior.mean.tolist(), "std": prior.std.tolist(),
                        "input": "latent" + (", then the class one-hot" if conditional else "")}}
    role = f"{source.role}_decoder" if encoder is not None else source.role
    return dataclasses.replace(source, role=role, model=decoder, spec=latent_spec(prior.size + prior.classes),
                               feeds=feeds, passes={**source.passes, **extra})
