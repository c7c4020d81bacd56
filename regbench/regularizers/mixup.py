"""Mixup (Zhang et al., 2018): train on convex combinations of pairs of examples and of their targets.

Each example i of a member's batch is paired with example perm[i] of the same batch (a random permutation per
member and step) and replaced by lam * x_i + (1 - lam) * x_perm[i], its target by the same mix of the two one-hot
(or already softened) targets. lam ~ Beta(alpha, alpha) is drawn per example. Members without mixup keep lam = 1,
so their inputs pass through exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from regbench import rng
from regbench.regularizers.base import Batch, Regularizer, broadcast
from regbench.schema import param

PAIRS, WEIGHTS = rng.stream_id("mixup.pairs"), rng.stream_id("mixup.lambda")


@dataclass
class MixupConfig:
    alpha: float = param(0.2, "Beta(alpha, alpha) distribution of the mixing weight", gt=0.0, le=100.0)


def mix(x: torch.Tensor, y: torch.Tensor, lam: torch.Tensor, perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [K, B, ...], y [K, B, C], lam [K, B], perm [K, B]: each example mixed with its partner in the same batch."""
    x2 = torch.gather(x, 1, perm.view(*perm.shape, *([1] * (x.dim() - 2))).expand_as(x))
    y2 = torch.gather(y, 1, perm.unsqueeze(-1).expand_as(y))
    lx = lam.view(*lam.shape, *([1] * (x.dim() - 2)))
    return lx * x + (1 - lx) * x2, lam.unsqueeze(-1) * y + (1 - lam.unsqueeze(-1)) * y2


class Mixup(Regularizer):
    name = "mixup"
    Config = MixupConfig
    summary = "train on pairs mixed with Beta(alpha, alpha) weights"
    singles = {"weak": {"alpha": 0.1}, "mid": {"alpha": 0.2}, "strong": {"alpha": 0.4}}
    grid = {"alpha": [0.05, 0.1, 0.2, 0.4, 1.0]}

    def __init__(self, configs, device="cpu"):
        super().__init__(configs, device)
        self.alpha = self.values("alpha", off=1.0)

    def draw(self, seeds, step, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(lam [K, B], perm [K, B]) for one step; lam is 1 for members without mixup."""
        perm = rng.uniform(seeds, step, PAIRS, (b,)).argsort(dim=1)
        lam = rng.beta(seeds, step, WEIGHTS, (b,), self.alpha.to(seeds.device))
        return torch.where(broadcast(self.active.to(lam.device), lam), lam, torch.ones_like(lam)), perm

    def transform(self, batch, ctx):
        lam, perm = self.draw(ctx.seeds, ctx.step, batch.x.shape[1])
        x, y = mix(batch.x, batch.soft_targets(), lam, perm)
        return Batch(x, y, batch.n_classes, batch.kind)
