"""A small MobileFaceNet-class verifier for 112x112 aligned crops, built for CPU training and INT8 deployment.

Only Conv/BatchNorm/ReLU/Add/Flatten/Linear: every op exports to ONNX (opset 13-17) and quantizes with
onnxruntime's static QDQ. ReLU replaces MobileFaceNet's PReLU, which ran about 5x slower in onnxruntime and
erased the INT8 gain (DESIGN.md). Shapes below are for width 1.0; ``width`` scales every channel count.
"""
from __future__ import annotations

from torch import nn

# (expansion, output channels at width 1.0, repeats, stride of the first repeat). MobileFaceNet's schedule,
# shortened (2/1/2/1/1 repeats instead of 5/1/6/1/2) so that training 112x112 inputs on two cores stays fast.
BOTTLENECKS = (
    (2, 64, 2, 2),    # 56 -> 28
    (4, 128, 1, 2),   # 28 -> 14
    (2, 128, 2, 1),
    (4, 128, 1, 2),   # 14 -> 7
    (2, 128, 1, 1),
)
# The published MobileFaceNet's schedule (5/1/6/1/2 repeats), for comparison (compile.int8_gain).
PAPER_BOTTLENECKS = (
    (2, 64, 5, 2),
    (4, 128, 1, 2),
    (2, 128, 6, 1),
    (4, 128, 1, 2),
    (2, 128, 2, 1),
)


def scaled(channels: int, width: float) -> int:
    """Channel count at ``width``, rounded to a multiple of 8 (vector-friendly), never below 8."""
    return max(8, int(round(channels * width / 8)) * 8)


def conv_bn(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, relu: bool = True,
            padding: int | None = None) -> nn.Sequential:
    """Conv without bias (BatchNorm follows) + BatchNorm (+ ReLU); 'same' padding unless told otherwise."""
    padding = kernel // 2 if padding is None else padding
    layers = [nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """1x1 expand -> 3x3 depthwise -> 1x1 linear projection, with a skip when the shape is unchanged."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        hidden = cin * expansion
        self.skip = stride == 1 and cin == cout
        self.body = nn.Sequential(
            conv_bn(cin, hidden),                                     # N,hidden,H,W
            conv_bn(hidden, hidden, 3, stride, groups=hidden),        # N,hidden,H/s,W/s
            conv_bn(hidden, cout, relu=False),                        # N,cout,H/s,W/s (linear bottleneck)
        )

    def forward(self, x):
        return x + self.body(x) if self.skip else self.body(x)


class MobileFaceNetS(nn.Module):
    """112x112 RGB in [-1, 1] -> raw (unnormalised) embedding (N, embedding); L2-normalise before comparing."""

    def __init__(self, width: float = 0.5, embedding: int = 128, input_size: int = 112,
                 bottlenecks: tuple[tuple[int, int, int, int], ...] = BOTTLENECKS):
        super().__init__()
        if input_size % 16:
            raise ValueError(f"input_size must be a multiple of 16 (four stride-2 stages), got {input_size}")
        stem = scaled(64, width)
        layers = [
            conv_bn(3, stem, 3, 2),                                   # N,64,56,56
            conv_bn(stem, stem, 3, 1, groups=stem),                   # N,64,56,56 (depthwise)
        ]
        cin = stem
        for expansion, channels, repeats, stride in bottlenecks:      # -> N,128,7,7
            cout = scaled(channels, width)
            for i in range(repeats):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expansion))
                cin = cout
        head = scaled(512, width)
        final = input_size // 16
        layers += [
            conv_bn(cin, head),                                       # N,512,7,7
            # Global depthwise conv: a learned per-position weighting instead of average pooling, which
            # matters for faces because the centre (eyes, nose) carries more identity than the border.
            conv_bn(head, head, final, groups=head, relu=False, padding=0),  # N,512,1,1
        ]
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten()                                   # N,512
        self.project = nn.Linear(head, embedding, bias=False)         # N,128
        self.norm = nn.BatchNorm1d(embedding)                         # N,128

    def forward(self, x):
        return self.norm(self.project(self.flatten(self.features(x))))
