"""L2 penalty (coupled weight decay): strength * sum w^2, added to each member's loss; gradient 2*strength*w.

Coupled means the penalty's gradient passes through the optimizer: under Adam it is rescaled per weight, which is
why decoupled weight decay (AdamW) is a different regularizer, not a synonym.
With elastic_net or weight_decay it adds to them (combinations are additive, not refused: see base.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from regbench.regularizers.base import Regularizer
from regbench.regularizers.weights import WeightScope
from regbench.schema import param


@dataclass
class L2Config:
    strength: float = param(1e-4, "coefficient of sum w^2", ge=0.0)
    biases: bool = param(False, "also penalise biases")
    norms: bool = param(False, "also penalise batch-norm scale and shift")


class L2(Regularizer):
    name = "l2"
    Config = L2Config
    summary = "L2 weight penalty: strength * sum w^2"
    singles = {"weak": {"strength": 1e-5}, "mid": {"strength": 1e-4}, "strong": {"strength": 1e-3}}
    grid = {"strength": [1e-6, 1e-5, 1e-4, 1e-3, 1e-2]}

    def __init__(self, configs, device="cpu"):
        super().__init__(configs, device)
        self.strength = self.values("strength")
        self.scope = WeightScope(self)
        self.grad = self.scope.gradient(2 * self.strength)  # d(strength * w^2)/dw = 2 * strength * w

    def penalty(self, model):
        total = self.scope.total(model, lambda p: p.square().sum(1))
        return None if total is None else self.strength * total

    def penalty_grad(self, model, params=None):
        self.grad.add(model, None, params)
