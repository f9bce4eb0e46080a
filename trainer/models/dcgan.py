"""DCGAN at 64x64 (Radford et al. 2016) and its conditional form.

The generator maps a latent (and, conditional, a class label) through transposed convolutions with BatchNorm and
ReLU to a 64x64 RGB face; the discriminator mirrors it with strided convolutions and LeakyReLU. The generator's
output is mapped from tanh's [-1, 1] to [0, 1], the range of the project's generator input spec, so a generated
face goes through ``edge.runtime.preprocess.output_to_images`` like an autoencoder's.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

UPSAMPLINGS = 4        # 4x4 -> 8 -> 16 -> 32 -> 64


def _check_size(input_size: int) -> None:
    if input_size != 4 * 2 ** UPSAMPLINGS:
        raise ValueError(f"DCGAN here is built for 64x64 faces, got input_size {input_size}")


class DCGANGenerator(nn.Module):
    """z (N, latent) [+ label (N,) int64 when ``classes`` > 0] -> faces (N, 3, 64, 64) in [0, 1]."""

    def __init__(self, latent: int = 100, width: int = 64, classes: int = 0, input_size: int = 64):
        super().__init__()
        _check_size(input_size)
        self.latent, self.classes = latent, classes
        # A conditional generator takes the class one-hot after z (the cGAN of Mirza & Osindero). A learned embedding
        # as wide as z, tried first, outweighed z: the generator drew one face per class whatever z was.
        widths = [width * 8, width * 4, width * 2, width]                       # 512, 256, 128, 64 by default
        layers = [nn.ConvTranspose2d(latent + classes, widths[0], 4, 1, 0, bias=False),
                  nn.BatchNorm2d(widths[0]), nn.ReLU(True)]                     # N,512,4,4
        for wide, narrow in zip(widths, widths[1:]):
            layers += [nn.ConvTranspose2d(wide, narrow, 4, 2, 1, bias=False), nn.BatchNorm2d(narrow), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(widths[-1], 3, 4, 2, 1, bias=False), nn.Tanh()]   # N,3,64,64
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        if not self.classes:
            return self.from_code(z)
        if label is None:
            raise ValueError("this generator is conditional: pass a label per latent")
        return self.from_code(torch.cat([z, nn.functional.one_hot(label, self.classes).to(z.dtype)], dim=1))

    def from_code(self, code: torch.Tensor) -> torch.Tensor:
        """z (then a conditional generator's class one-hot) as one tensor -> faces: the graph compile exports."""
        return (self.net(code[:, :, None, None]) + 1) / 2

    def fold_batchnorm(self) -> DCGANGenerator:
        """A copy for inference with each BatchNorm folded into the transposed convolution before it (scaled weights
        and a bias): the same faces with fewer layers, and biased convolutions, which ai-edge-quantizer's
        full-integer TRANSPOSE_CONV needs (without a bias its per-channel scales make a file the interpreter
        refuses)."""
        folded = copy.deepcopy(self).eval()
        layers, kept = list(folded.net), []
        for layer, after in zip(layers, [*layers[1:], None]):
            if isinstance(layer, nn.BatchNorm2d):
                continue                                                       # folded into the layer before
            if isinstance(layer, nn.ConvTranspose2d):
                layer = _with_batchnorm(layer, after if isinstance(after, nn.BatchNorm2d) else None)
            kept.append(layer)
        folded.net = nn.Sequential(*kept)
        return folded

    def decode(self, z: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        """The same call the autoencoders' decoders answer, so samplers treat every family alike."""
        return self(z, label)


class DCGANDiscriminator(nn.Module):
    """faces (N, 3, 64, 64) in [0, 1] [+ label] -> one logit per face. A conditional discriminator is a projection
    discriminator (Miyato & Koyama 2018): the logit gains the inner product of a learned class embedding with the
    image's pooled features. (Label planes concatenated to the input, the older cGAN form, let the discriminator win
    within an epoch here and the generator collapsed to one face per class.)"""

    def __init__(self, width: int = 64, classes: int = 0, input_size: int = 64):
        super().__init__()
        _check_size(input_size)
        self.classes = classes
        widths = [width, width * 2, width * 4, width * 8]
        layers = [nn.Conv2d(3, widths[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]   # N,64,32,32
        for narrow, wide in zip(widths, widths[1:]):
            layers += [nn.Conv2d(narrow, wide, 4, 2, 1, bias=False), nn.BatchNorm2d(wide), nn.LeakyReLU(0.2, True)]
        self.features = nn.Sequential(*layers)                                     # N,512,4,4
        self.logit = nn.Sequential(nn.Conv2d(widths[-1], 1, 4, 1, 0, bias=False), nn.Flatten())   # N,1
        self.label_embedding = nn.Embedding(classes, widths[-1]) if classes else None
        self.apply(dcgan_init)

    def forward(self, images: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        features = self.features(images * 2 - 1)
        logit = self.logit(features)[:, 0]
        if self.label_embedding is None:
            return logit
        return logit + (self.label_embedding(label) * features.sum(dim=(2, 3))).sum(dim=1) / features[0, 0].numel()


@torch.no_grad()
def _with_batchnorm(conv: nn.ConvTranspose2d, norm: nn.BatchNorm2d | None) -> nn.ConvTranspose2d:
    """``conv`` then ``norm`` (in eval mode) as one transposed convolution with a bias."""
    folded = nn.ConvTranspose2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                                bias=True)
    weight = conv.weight.clone()                                              # in, out, k, k
    bias = conv.bias.clone() if conv.bias is not None else torch.zeros(conv.out_channels)
    if norm is not None:
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        weight, bias = weight * scale[None, :, None, None], (bias - norm.running_mean) * scale + norm.bias
    folded.weight.copy_(weight)
    folded.bias.copy_(bias)
    return folded


def dcgan_init(module: nn.Module) -> None:
    """The paper's initialisation: conv weights N(0, 0.02), BatchNorm scales N(1, 0.02) and zero shifts."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
