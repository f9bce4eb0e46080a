"""Greedy layer-wise pre-training of the convolutional autoencoder (the stacked autoencoder of Bengio et al. 2007,
Vincent et al. 2010): before the whole network trains end to end, each encoder convolution learns, with its mirror
decoder layer, to rebuild its own input (the image for the first, the previous layer's features after it), the
layers below it frozen. It gives the deep layers a sensible start on small sets."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from trainer.data import augment, batches, to_tensor
from trainer.models.autoencoder import ConvAutoencoder
from trainer.report import epoch_bar


def layer_pairs(model: ConvAutoencoder) -> list[tuple[nn.Conv2d, nn.ConvTranspose2d, nn.Module]]:
    """(encoder conv, its mirror decoder layer, that layer's activation) from the input side inwards."""
    convs = [m for m in model.encoder if isinstance(m, nn.Conv2d)]
    ups = [m for m in model.decoder if isinstance(m, nn.ConvTranspose2d)][::-1]
    activations = [nn.Sigmoid()] + [nn.ReLU()] * (len(convs) - 1)   # the image is in [0, 1], features >= 0
    return list(zip(convs, ups, activations))


def pretrain_layerwise(model: ConvAutoencoder, images: np.ndarray, spec, epochs: int, batch_size: int, lr: float,
                       rng: np.random.Generator, device: torch.device) -> list[float]:
    """``epochs`` of training per layer pair; returns each pair's last reconstruction loss (MSE of its input)."""
    losses = []
    pairs = layer_pairs(model)
    for depth, (conv, up, activation) in enumerate(pairs):
        below = [m for c, _, _ in pairs[:depth] for m in (c, nn.ReLU())]
        frozen = nn.Sequential(*below).eval()
        optimizer = torch.optim.Adam([*conv.parameters(), *up.parameters()], lr=lr)
        loss = torch.tensor(float("nan"))
        for epoch in range(1, epochs + 1):
            with epoch_bar(epoch, epochs, len(images)) as bar:
                bar.set_description(f"stacked layer {depth + 1}/{len(pairs)} epoch {epoch}/{epochs}")
                for index in batches(len(images), batch_size, rng):
                    with torch.no_grad():
                        target = frozen(to_tensor(augment(images[index], rng), spec, device=device))
                    loss = nn.functional.mse_loss(activation(up(torch.relu(conv(target)))), target)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
                    bar.update(len(index))
        losses.append(round(float(loss.item()), 6))
    return losses
