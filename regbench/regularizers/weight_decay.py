"""Decoupled weight decay (Loshchilov and Hutter, 2019, "AdamW"): after each optimizer step, w <- w * (1 - lr * wd).

Unlike the l2 penalty, the shrinkage never passes through the optimizer, so Adam's per-weight rescaling does not
touch it: every weight shrinks by the same factor each step, whatever its gradient. (AdamW applies the factor just
before the step rather than just after; the two differ by a term of order lr^2 * wd.) With l2 or elastic_net it
adds to them: coupled and decoupled decay are different regularizers, and both act.
"""

from __future__ import annotations

from dataclasses import dataclass

from regbench.regularizers.base import Regularizer
from regbench.regularizers.weights import WeightScope
from regbench.schema import param


@dataclass
class WeightDecayConfig:
    strength: float = param(1e-2, "decay per unit of learning rate (w *= 1 - lr*strength each step)", ge=0.0)
    biases: bool = param(False, "also decay biases")
    norms: bool = param(False, "also decay batch-norm scale and shift")


class WeightDecay(Regularizer):
    name = "weight_decay"
    Config = WeightDecayConfig
    summary = "decoupled (AdamW-style) weight decay after each step"
    singles = {"weak": {"strength": 1e-3}, "mid": {"strength": 1e-2}, "strong": {"strength": 1e-1}}
    grid = {"strength": [1e-4, 1e-3, 1e-2, 1e-1, 3e-1]}

    def __init__(self, configs, device="cpu"):
        super().__init__(configs, device)
        self.strength = self.values("strength")
        self.decay = WeightScope(self).gradient(self.strength)  # the members and slices that decay

    def post_step(self, model, lr):
        self.decay.shrink(model, lr)
