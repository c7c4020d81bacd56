"""Max-norm constraint (Srebro and Shraibman, 2005; used with dropout by Srivastava et al., 2014): after each step,
each unit's vector of incoming weights is rescaled, if needed, so its L2 norm is at most c.

Applies to every linear and convolutional layer, the output layer included; biases are not constrained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from regbench.regularizers.base import Regularizer
from regbench.schema import param


@dataclass
class MaxNormConfig:
    c: float = param(3.0, "largest allowed L2 norm of a unit's incoming weights", gt=0.0)


class MaxNorm(Regularizer):
    name = "max_norm"
    Config = MaxNormConfig
    summary = "project each unit's incoming weights onto the ball of radius c"
    singles = {"weak": {"c": 4.0}, "mid": {"c": 2.0}, "strong": {"c": 1.0}}
    grid = {"c": [8.0, 4.0, 2.0, 1.0, 0.5]}

    def __init__(self, configs, device="cpu"):
        super().__init__(configs, device)
        self.c = self.values("c", off=math.inf)  # members without it: an infinite radius never projects

    @torch.no_grad()
    def post_step(self, model, lr):
        c = self.c.view(-1, 1, 1)
        for w in model.weights:
            rows = model.weight_rows(w)  # a view: [K, units, fan_in]
            norms = rows.norm(dim=2, keepdim=True)
            rows.mul_((c / norms.clamp_min(1e-12)).clamp(max=1.0))
