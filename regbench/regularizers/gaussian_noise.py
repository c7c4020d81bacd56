"""Gaussian input noise (Bishop, 1995): each training input gets x + std * N(0, 1), drawn per member and element.

Inputs are standardised (unit variance over the training split), so std is in units of the data's spread. Only
training batches are noised; evaluation sees clean inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from regbench import rng
from regbench.regularizers.base import Batch, Regularizer, broadcast
from regbench.schema import param

STREAM = rng.stream_id("gaussian_noise")


@dataclass
class GaussianNoiseConfig:
    std: float = param(0.1, "standard deviation of the added noise (inputs are standardised)", ge=0.0)


class GaussianNoise(Regularizer):
    name = "gaussian_noise"
    Config = GaussianNoiseConfig
    summary = "add N(0, std^2) noise to training inputs"
    singles = {"weak": {"std": 0.05}, "mid": {"std": 0.1}, "strong": {"std": 0.2}}

    def __init__(self, configs, device="cpu"):
        super().__init__(configs, device)
        self.std = self.values("std")

    def transform(self, batch, ctx):
        x = batch.x
        noise = rng.normal(ctx.seeds, ctx.step, STREAM, tuple(x.shape[1:]))
        return Batch(x + broadcast(self.std.to(x.device), x) * noise, batch.y, batch.n_classes, batch.kind)
