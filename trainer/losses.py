"""The verifier's training losses: ArcFace and CosFace classifier heads (used only while training) and the batch-hard
triplet loss."""
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


class CosFaceHead(ArcFaceHead):
    """CosFace (large margin cosine): the margin is subtracted from the true class's cosine, cos(theta) - m, rather
    than added to its angle; simpler, and steadier than ArcFace when few images per identity make a noisy centre."""

    def __init__(self, embedding: int, classes: int, scale: float = 30.0, margin: float = 0.35):
        super().__init__(embedding, classes, scale, margin)

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cosine = F.linear(F.normalize(embeddings), F.normalize(self.weight))       # N,classes
        target = F.one_hot(labels, cosine.shape[1]).bool()
        return self.scale * torch.where(target, cosine - self.margin, cosine)


class BatchHardTripletLoss(nn.Module):
    """Triplet loss with online hard mining (Hermans et al. 2017, "batch hard"): for every face in a batch of P
    identities x K images, its farthest same-identity face and its nearest other-identity face, on unit embeddings;
    loss = mean(max(0, d(a, hardest positive) - d(a, hardest negative) + margin)). It has no parameters: ``margin``
    (a distance on the unit sphere) may change during training like the heads' margins."""

    def __init__(self, margin: float = 0.3):
        super().__init__()
        self.margin = margin

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        unit = F.normalize(embeddings)
        distance = torch.cdist(unit, unit)                                          # N,N
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        positive = distance.masked_fill(~same | eye, float("-inf")).amax(dim=1)
        negative = distance.masked_fill(same, float("inf")).amin(dim=1)
        usable = torch.isfinite(positive) & torch.isfinite(negative)               # faces with both kinds here
        if not usable.any():
            return embeddings.sum() * 0.0
        return F.relu(positive[usable] - negative[usable] + self.margin).mean()
