"""The accuracy gate's reference: the PyTorch FP32 model's outputs on the held-out images.

Each artifact is then run by the edge backend that will run it, one image at a time, and scored against these
outputs by ``edge.bundles.golden.gate``, so a graph whose batch axis broke in conversion fails here rather than on the
board; the board repeats the check on a few of the same images (``python -m edge bundle check``).
"""
from __future__ import annotations

import numpy as np
import torch


def torch_reference(model: torch.nn.Module, batch: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(torch.from_numpy(batch)).numpy()
