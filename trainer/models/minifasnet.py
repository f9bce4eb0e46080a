"""MiniFASNet (Silent-Face-Anti-Spoofing's passive liveness networks) as a plain PyTorch module.

Input: an 80x80 BGR crop around the face, pixel values 0-255 as they are (no mean, no scale), NCHW float.
Output: three logits (N, 3); after softmax, class 1 is a live face (0 and 2 are the publisher's attack classes).

A MobileFaceNet-like body: a stride-2 stem, a depthwise conv, then three stages, each opened by a stride-2
inverted bottleneck and followed by residual bottlenecks whose expansion widths the publisher pruned per block
(so every width is in the config); MiniFASNetV1SE adds squeeze-and-excitation to the last block of each stage.
Module names follow the publisher's state dict, so its files load with ``strict=True`` once a ``module.`` prefix
is stripped. Shapes below are for 80x80.
"""
from __future__ import annotations

import torch
from torch import nn

STAGE_NAMES = (("conv_23", "conv_3"), ("conv_34", "conv_4"), ("conv_45", "conv_5"))


class ConvBlock(nn.Sequential):
    """conv (no bias) + BatchNorm, then a per-channel PReLU unless ``linear``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0, groups: int = 1,
                 linear: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        if not linear:
            self.prelu = nn.PReLU(cout)


class SqueezeExcite(nn.Module):
    """Channel weights from the pooled map: 1x1 conv down, BN, ReLU, 1x1 conv up, BN, sigmoid."""

    def __init__(self, channels: int, squeezed: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)                       # N,C,1,1
        self.fc1 = nn.Conv2d(channels, squeezed, 1, bias=False)   # N,C/r,1,1
        self.bn1 = nn.BatchNorm2d(squeezed)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(squeezed, channels, 1, bias=False)   # N,C,1,1
        self.bn2 = nn.BatchNorm2d(channels)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.sigmoid(self.bn2(self.fc2(self.relu(self.bn1(self.fc1(self.pool(x)))))))
        return x * weights


class Bottleneck(nn.Module):
    """1x1 expand (PReLU), 3x3 depthwise (PReLU), 1x1 project (linear) [, squeeze-excite]; a residual block adds
    its input, an opening block (stride 2) does not."""

    def __init__(self, cin: int, expanded: int, cout: int, stride: int, squeezed: int = 0):
        super().__init__()
        self.residual = stride == 1 and cin == cout
        self.conv = ConvBlock(cin, expanded, 1)
        self.conv_dw = ConvBlock(expanded, expanded, 3, stride, 1, groups=expanded)
        self.project = ConvBlock(expanded, cout, 1, linear=True)
        if squeezed:
            self.se_module = SqueezeExcite(cout, squeezed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.conv_dw(self.conv(x)))
        if hasattr(self, "se_module"):
            out = self.se_module(out)
        return x + out if self.residual else out


class ResidualStage(nn.Module):
    def __init__(self, channels: int, blocks: list | tuple):
        super().__init__()
        self.model = nn.Sequential(*[Bottleneck(channels, expanded, channels, 1, squeezed)
                                     for expanded, squeezed in blocks])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class MiniFASNet(nn.Module):
    """80x80 BGR 0-255 (N,3,80,80) -> 3 logits (N,3).

    ``stages``: three dicts, input to output: ``expanded`` (the opening block's width), ``channels`` (the stage's
    width) and ``blocks`` ([expanded width, squeeze-excite width or 0] per residual block).
    """

    def __init__(self, stages: list | tuple, input_size: int = 80, stem: int = 32, head: int = 512,
                 embedding: int = 128, classes: int = 3, dropout: float = 0.2):
        super().__init__()
        if input_size % 16:
            raise ValueError(f"input_size must be a multiple of 16 (four halvings), got {input_size}")
        if len(stages) != len(STAGE_NAMES):
            raise ValueError(f"MiniFASNet has {len(STAGE_NAMES)} stages, got {len(stages)}")
        self.input_size = input_size
        self.conv1 = ConvBlock(3, stem, 3, 2, 1)                            # N,32,40,40
        self.conv2_dw = ConvBlock(stem, stem, 3, 1, 1, groups=stem)         # N,32,40,40
        channels = stem
        for (opening, residual), stage in zip(STAGE_NAMES, stages):         # 40 -> 20 -> 10 -> 5
            setattr(self, opening, Bottleneck(channels, stage["expanded"], stage["channels"], 2))
            channels = stage["channels"]
            setattr(self, residual, ResidualStage(channels, stage["blocks"]))
        self.conv_6_sep = ConvBlock(channels, head, 1)                      # N,512,5,5
        side = input_size // 16
        self.conv_6_dw = ConvBlock(head, head, side, groups=head, linear=True)   # N,512,1,1
        self.flatten = nn.Flatten()                                         # N,512
        self.linear = nn.Linear(head, embedding, bias=False)                # N,128
        self.bn = nn.BatchNorm1d(embedding)
        self.drop = nn.Dropout(dropout)                                     # training only
        self.prob = nn.Linear(embedding, classes, bias=False)               # N,3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2_dw(self.conv1(x))
        for opening, residual in STAGE_NAMES:
            x = getattr(self, residual)(getattr(self, opening)(x))
        x = self.flatten(self.conv_6_dw(self.conv_6_sep(x)))
        return self.prob(self.drop(self.bn(self.linear(x))))
