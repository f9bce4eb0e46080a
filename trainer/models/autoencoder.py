"""The seed face generator: a small convolutional autoencoder on 64x64 aligned crops.

Decoding a latent drawn from the training latents' distribution makes new faces; the encoder exists so the
reconstruction quality (PSNR) gives a held-out number that says whether the decoder learned faces at all.
"""
from __future__ import annotations

import torch
from torch import nn


class ConvAutoencoder(nn.Module):
    """Stride-2 convs down (one per width in ``channels``), a linear bottleneck, and the mirror image up; RGB or grey
    (``in_channels``). Shapes in the comments are for the seed's defaults."""

    def __init__(self, channels: tuple[int, ...] | list[int] = (16, 32, 64), latent: int = 32, input_size: int = 64,
                 in_channels: int = 3):
        super().__init__()
        channels = list(channels)
        if not channels:
            raise ValueError("channels must list at least one encoder width")
        depth = len(channels)
        if input_size % 2 ** depth:
            raise ValueError(f"input_size must be a multiple of {2 ** depth} ({depth} stride-2 layers), got "
                             f"{input_size}")
        self.bottom = input_size // 2 ** depth             # 8 for a 64x64 input
        self.bottom_channels = channels[-1]
        flat = channels[-1] * self.bottom * self.bottom    # 64*8*8 = 4096

        # Kernel 4, stride 2, padding 1 halves (conv) or doubles (transposed conv) the size exactly.
        down, widths = [], [in_channels, *channels]
        for narrow, wide in zip(widths, widths[1:]):
            down += [nn.Conv2d(narrow, wide, 4, 2, 1), nn.ReLU(inplace=True)]    # N,16,32,32 ... N,64,8,8
        self.encoder = nn.Sequential(*down, nn.Flatten(), nn.Linear(flat, latent))   # N,32 (linear: no ReLU)
        self.expand = nn.Sequential(nn.Linear(latent, flat), nn.ReLU(inplace=True))  # N,4096
        up = []
        for wide, narrow in zip(widths[::-1], widths[::-1][1:]):
            up += [nn.ConvTranspose2d(wide, narrow, 4, 2, 1), nn.ReLU(inplace=True)]  # N,32,16,16 ... N,3,64,64
        # the generator input spec maps pixels to [0, 1]; so must the output
        self.decoder = nn.Sequential(*up[:-1], nn.Sigmoid())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)                                                    # N,3,64,64 -> N,32

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        grid = self.expand(z).view(-1, self.bottom_channels, self.bottom, self.bottom)  # N,64,8,8
        return self.decoder(grid)                                                 # N,3,64,64

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class ConvVAE(ConvAutoencoder):
    """The same shapes as a variational autoencoder: the encoder's linear layer gives a mean and a log-variance
    per latent dimension (N,2*latent), training decodes a sample drawn with the reparameterisation trick, and
    new faces decode latents drawn from the standard normal prior. In eval mode the mean is decoded, so the
    exported reconstructing graph is deterministic."""

    def __init__(self, channels: tuple[int, ...] | list[int] = (16, 32, 64), latent: int = 32, input_size: int = 64,
                 in_channels: int = 3):
        super().__init__(channels, latent, input_size, in_channels)
        self.latent = latent
        last = self.encoder[-1]
        self.encoder[-1] = nn.Linear(last.in_features, 2 * latent)               # N,64 = mean and log-variance

    def statistics(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stats = self.encoder(x)                                                  # N,2*latent
        return stats[:, :self.latent], stats[:, self.latent:].clamp(-10, 10)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.sample(*self.statistics(x))

    def sample(self, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        """A latent drawn from N(mean, exp(log_var)) while training (the reparameterisation trick), the mean in
        eval mode."""
        if not self.training:
            return mean
        return mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)


def kl_divergence(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per image, summed over latent dimensions, averaged over the batch."""
    return (-0.5 * (1 + log_var - mean.pow(2) - log_var.exp()).sum(dim=1)).mean()


class FaceSwapAutoencoder(nn.Module):
    """The face-swap autoencoder: one encoder shared by all people, one decoder per person. Trained to rebuild each
    person's faces through their own decoder, the shared code comes to hold pose, expression and lighting, and the
    decoders the identity, so person A's code through B's decoder gives B's face in A's pose. ``forward`` is the
    swap into person ``swap_to``: the graph compile exports."""

    def __init__(self, channels: tuple[int, ...] | list[int] = (32, 64, 128), latent: int = 256, input_size: int = 64,
                 people: int = 2, swap_to: int = 1):
        super().__init__()
        if people < 2 or not 0 <= swap_to < people:
            raise ValueError(f"a face swap needs at least two people and swap_to among them, got {people}, {swap_to}")
        self.swap_to = swap_to
        decoders = [ConvAutoencoder(channels, latent, input_size) for _ in range(people)]
        self.encoder = decoders[0].encoder
        for decoder in decoders:
            decoder.encoder = None               # the shared encoder above is the only one
        self.decoders = nn.ModuleList(decoders)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor, person: int | None = None) -> torch.Tensor:
        return self.decoders[self.swap_to if person is None else person].decode(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))
