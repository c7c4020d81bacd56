"""Elastic net (Zou and Hastie, 2005): strength * (l1_ratio * sum |w| + (1 - l1_ratio) * sum w^2).

The two terms use the same scaling as regbench's l1 and l2, so l1_ratio=1 is exactly l1 and l1_ratio=0 exactly l2
at the same strength (scikit-learn halves the squared term instead). Combined with l1 or l2 it adds to them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from regbench.regularizers.base import Regularizer
from regbench.regularizers.weights import WeightScope
from regbench.schema import param


@dataclass
class ElasticNetConfig:
    strength: float = param(1e-4, "overall coefficient", ge=0.0)
    l1_ratio: float = param(0.5, "share of the L1 term; the rest is L2", ge=0.0, le=1.0)
    biases: bool = param(False, "also penalise biases")
    norms: bool = param(False, "also penalise batch-norm scale and shift")


class ElasticNet(Regularizer):
    name = "elastic_net"
    Config = ElasticNetConfig
    summary = "L1 + L2 penalty: strength * (r * sum|w| + (1-r) * sum w^2)"
    singles = {"weak": {"strength": 1e-5}, "mid": {"strength": 1e-4}, "strong": {"strength": 1e-3}}
    grid = {"strength": [1e-6, 1e-5, 1e-4, 1e-3, 1e-2]}

    def __init__(self, configs, device="cpu"):
        super().__init__(configs, device)
        ratio = self.values("l1_ratio")
        self.l1 = self.values("strength") * ratio
        self.l2 = self.values("strength") * (1 - ratio)
        self.scope = WeightScope(self)
        self.l1_grad, self.l2_grad = self.scope.gradient(self.l1), self.scope.gradient(2 * self.l2)

    def penalty(self, model):
        l1 = self.scope.total(model, lambda p: p.abs().sum(1))
        if l1 is None:
            return None
        return self.l1 * l1 + self.l2 * self.scope.total(model, lambda p: p.square().sum(1))

    def penalty_grad(self, model, params=None):
        self.l1_grad.add(model, torch.sign, params)
        self.l2_grad.add(model, None, params)
