"""Image losses for the generators: SSIM in PyTorch, the same index ``edge.base.metrics.ssim`` reports."""
from __future__ import annotations

import torch
import torch.nn.functional as F

WINDOW, SIGMA = 11, 1.5          # Wang et al. 2004, as edge.base.metrics.ssim
C1, C2 = 0.01 ** 2, 0.03 ** 2    # for images in [0, 1]


def _window(channels: int, device) -> torch.Tensor:
    steps = torch.arange(WINDOW, dtype=torch.float32, device=device) - WINDOW // 2
    line = torch.exp(-steps ** 2 / (2 * SIGMA ** 2))
    line = line / line.sum()
    return (line[:, None] * line[None, :]).expand(channels, 1, WINDOW, WINDOW).contiguous()   # C,1,11,11


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of two batches (N,C,H,W) in [0, 1]; borders reflected like OpenCV's, so it matches the numpy
    index to a few 1e-4."""
    channels = x.shape[1]
    window = _window(channels, x.device).to(x.dtype)
    pad = WINDOW // 2

    def blur(t):
        return F.conv2d(F.pad(t, (pad,) * 4, mode="reflect"), window, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y = blur(x * x) - mu_x ** 2, blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    index = ((2 * mu_x * mu_y + C1) * (2 * cov + C2)) / ((mu_x ** 2 + mu_y ** 2 + C1) * (var_x + var_y + C2))
    return index.mean()


def reconstruction_loss(output: torch.Tensor, target: torch.Tensor, ssim_weight: float) -> torch.Tensor:
    """(1 - w) * MSE + w * (1 - SSIM): MSE alone blurs faces; SSIM keeps their local structure."""
    mse = F.mse_loss(output, target)
    if ssim_weight == 0:
        return mse
    return (1 - ssim_weight) * mse + ssim_weight * (1 - ssim(output, target))
