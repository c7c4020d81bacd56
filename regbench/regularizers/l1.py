"""L1 penalty: strength * sum |w|, added to each member's loss. Drives weights to exactly zero (sparsity).

With elastic_net the two penalties add up (see regularizers/base.py: combinations are additive, not refused).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from regbench.regularizers.base import Regularizer
from regbench.regularizers.weights import WeightScope
from regbench.schema import param


@dataclass
class L1Config:
    strength: float = param(1e-4, "coefficient of sum |w|", ge=0.0)
    biases: bool = param(False, "also penalise biases")
    norms: bool = param(False, "also penalise batch-norm scale and shift")


class L1(Regularizer):
    name = "l1"
    Config = L1Config
    summary = "L1 weight penalty: strength * sum|w|"
    singles = {"weak": {"strength": 1e-5}, "mid": {"strength": 1e-4}, "strong": {"strength": 1e-3}}
    grid = {"strength": [1e-6, 1e-5, 1e-4, 1e-3, 1e-2]}

    def __init__(self, configs, device="cpu"):
        super().__init__(configs, device)
        self.strength = self.values("strength")
        self.scope = WeightScope(self)
        self.grad = self.scope.gradient(self.strength)

    def penalty(self, model):
        total = self.scope.total(model, lambda p: p.abs().sum(1))
        return None if total is None else self.strength * total

    def penalty_grad(self, model, params=None):
        self.grad.add(model, torch.sign, params)  # d|w|/dw = sign(w), 0 at 0 as autograd has it
