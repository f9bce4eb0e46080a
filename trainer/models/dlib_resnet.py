"""dlib's face-descriptor ResNet (``dlib_face_recognition_resnet_model_v1``) as a plain PyTorch module.

Input: a 150x150 RGB chip already normalised as (pixel - mean) / 256 (the checkpoint's InputSpec says how),
NCHW float. Output: the raw 128-D descriptor (N, 128), not L2-normalised: dlib calls two faces the same person
when the Euclidean distance between raw descriptors is below 0.6.

Only Conv/BatchNorm/ReLU/MaxPool/AvgPool/Pad/Add/GlobalAveragePool/MatMul, so it exports to ONNX (opsets 13-17)
and quantizes with onnxruntime. dlib's per-channel affine layers become eval-mode BatchNorms with neutral
statistics, which the ONNX exporter folds into the convolution before them (in train mode they are ordinary
BatchNorms on batch statistics, which is what fine-tuning wants). Shapes below are for 150x150.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# (output channels, stride) of each residual block, input to output, as in dlib's file: three blocks at 32
# channels, then a stride-2 block opening each of the 64 (4 blocks), 128 (3), 256 (3) stages and a last
# stride-2 block at 256.
DLIB_BLOCKS = ((32, 1),) * 3 + ((64, 2),) + ((64, 1),) * 3 + ((128, 2),) + ((128, 1),) * 2 \
    + ((256, 2),) + ((256, 1),) * 2 + ((256, 2),)


def conv_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output side of a convolution or pooling window (floor, as both dlib and PyTorch round)."""
    return (size + 2 * padding - kernel) // stride + 1


def affine(channels: int) -> nn.BatchNorm2d:
    """dlib's y = gamma * x + beta per channel: a BatchNorm whose statistics divide by exactly 1 in eval mode."""
    norm = nn.BatchNorm2d(channels)
    with torch.no_grad():
        norm.running_var.fill_(1.0 - norm.eps)   # sqrt(var + eps) == 1, so the affine is reproduced exactly
    return norm


class ResidualBlock(nn.Module):
    """conv3x3/affine/relu/conv3x3/affine plus a skip, then relu; stride 2 halves the size and pools the skip.

    dlib adds two branches of different shapes by zero-filling the smaller one at the end of each axis: the
    skip's missing channels (e.g. 32 -> 64) and the conv path's missing bottom row and right column where the
    unpadded stride-2 conv comes out one smaller than the 2x2 average pool (8 -> 3 against 8 -> 4). The fills
    are constant pads worked out here from the input size, so the exported graph has no shape arithmetic.
    """

    def __init__(self, cin: int, cout: int, stride: int, size: int):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        down = stride == 2
        # dlib pads a 3x3 conv only when its stride is 1; the stride-2 ones are unpadded.
        padding = 0 if down else 1
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, padding),     # N,cout,body,body
            affine(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1),               # N,cout,body,body
            affine(cout),
        )
        self.skip = nn.AvgPool2d(2, 2) if down else nn.Identity()   # N,cin,skip,skip
        body = conv_size(size, 3, stride, padding)
        skip = conv_size(size, 2, 2, 0) if down else size
        self.out_size = max(body, skip)
        self.out_channels = max(cin, cout)
        # F.pad order: (left, right) of W, (top, bottom) of H, (front, back) of C.
        self.body_pad = self.fill(cout, body)
        self.skip_pad = self.fill(cin, skip)
        self.relu = nn.ReLU(inplace=True)                 # N,max(cin,cout),out,out

    def fill(self, channels: int, size: int) -> tuple[int, ...]:
        grow = self.out_size - size
        return (0, grow, 0, grow, 0, self.out_channels - channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        body, skip = self.body(x), self.skip(x)
        if any(self.body_pad):
            body = F.pad(body, self.body_pad)
        if any(self.skip_pad):
            skip = F.pad(skip, self.skip_pad)
        return self.relu(body + skip)


class DlibResNet(nn.Module):
    """150x150 normalised RGB (N,3,150,150) -> raw descriptor (N,128); defaults are dlib's network."""

    def __init__(self, input_size: int = 150, stem: int = 32, blocks: list | tuple = DLIB_BLOCKS,
                 embedding: int = 128):
        super().__init__()
        self.input_size = input_size
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem, 7, 2, 0),                  # N,32,72,72 (unpadded, like dlib)
            affine(stem),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),                           # N,32,35,35
        )
        size = conv_size(conv_size(input_size, 7, 2, 0), 3, 2, 0)
        channels = stem
        layers = []
        for cout, stride in blocks:                       # 35 -> 17 -> 8 -> 4 (zero-filled) -> 2
            block = ResidualBlock(channels, cout, stride, size)
            layers.append(block)
            channels, size = block.out_channels, block.out_size
        self.blocks = nn.Sequential(*layers)              # N,256,2,2
        if size < 1:
            raise ValueError(f"input_size {input_size} is too small for {len(layers)} blocks")
        self.pool = nn.AdaptiveAvgPool2d(1)               # N,256,1,1
        self.flatten = nn.Flatten()                       # N,256
        self.project = nn.Linear(channels, embedding, bias=False)   # N,128

    def conv_affine_pairs(self) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
        """Every convolution with the affine after it, in forward order (the order of dlib's file)."""
        pairs = [(self.stem[0], self.stem[1])]
        for block in self.blocks:
            pairs += [(block.body[0], block.body[1]), (block.body[3], block.body[4])]
        return pairs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.flatten(self.pool(self.blocks(self.stem(x)))))
