"""Label smoothing (Szegedy et al., 2016): train on (1 - eps) * one_hot(y) + eps / C instead of one_hot(y).

The targets of each member's training batch are replaced; evaluation always scores the true labels. Combined with
mixup, it smooths the mixed targets (or mixup mixes the smoothed ones, in the composed order: the result is the
same, both being linear).
"""

from __future__ import annotations

from dataclasses import dataclass

from regbench.regularizers.base import Batch, Regularizer, broadcast
from regbench.schema import param


@dataclass
class LabelSmoothingConfig:
    epsilon: float = param(0.1, "probability mass spread uniformly over all classes", ge=0.0, lt=1.0)


class LabelSmoothing(Regularizer):
    name = "label_smoothing"
    Config = LabelSmoothingConfig
    summary = "soft targets: (1-eps) * one-hot + eps / classes"
    singles = {"weak": {"epsilon": 0.05}, "mid": {"epsilon": 0.1}, "strong": {"epsilon": 0.2}}
    grid = {"epsilon": [0.02, 0.05, 0.1, 0.2, 0.3]}

    def __init__(self, configs, device="cpu"):
        super().__init__(configs, device)
        self.eps = self.values("epsilon")

    def transform(self, batch, ctx):
        y = batch.soft_targets()
        eps = broadcast(self.eps.to(y.device), y)
        return Batch(batch.x, (1 - eps) * y + eps / batch.n_classes, batch.n_classes, batch.kind)
