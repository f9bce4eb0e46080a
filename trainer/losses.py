"""ArcFace (additive angular margin) loss: the classifier head used only while training the verifier."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ArcFaceHead(nn.Module):
    """Cosine logits with a margin ``m`` added to the angle of the true class, scaled by ``s``.

    Pushing each embedding's angle to its class centre below every other centre's angle by ``m`` is what
    makes cosine similarity between embeddings of unseen people meaningful. ``margin`` may be changed
    during training (a warm-up from a small margin helps a randomly initialised network get going).
    """

    def __init__(self, embedding: int, classes: int, scale: float = 30.0, margin: float = 0.4):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(classes, embedding))
        nn.init.xavier_uniform_(self.weight)
        self.scale = scale
        self.margin = margin

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cosine = F.linear(F.normalize(embeddings), F.normalize(self.weight))       # N,classes
        # Clamp away from +-1: the gradient of sqrt(1 - cos^2) is infinite there.
        cosine = cosine.clamp(-1 + 1e-6, 1 - 1e-6)
        sine = torch.sqrt(1.0 - cosine * cosine)
        cos_m, sin_m = math.cos(self.margin), math.sin(self.margin)
        with_margin = cosine * cos_m - sine * sin_m                                # cos(theta + m)
        # Past theta = pi - m, cos(theta + m) would start increasing again and reward a worse angle;
        # there the usual linear fall-back keeps the logit monotonic in theta.
        with_margin = torch.where(cosine > math.cos(math.pi - self.margin), with_margin,
                                  cosine - math.sin(math.pi - self.margin) * self.margin)
        target = F.one_hot(labels, cosine.shape[1]).bool()
        return self.scale * torch.where(target, with_margin, cosine)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(embeddings, labels), labels)
