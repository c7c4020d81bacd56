"""Weight noise (An, 1996; Graves, 2011's additive weight noise): each training step runs its forward and backward
pass at perturbed weights w + std * N(0, 1), drawn anew per member, step and weight, and the optimizer then updates
the clean weights w with the gradient taken at the perturbed ones. Evaluation sees the clean weights.

Weights of every linear and convolutional layer, the output layer included; biases only for members that ask. The
noise is keyed by the member's seed and the step (regbench/rng.py), so a member draws the same noise alone or in a
population. With penalties it composes plainly: they act on the clean weights, after the noise is removed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from regbench import rng
from regbench.models.layers import member_span
from regbench.regularizers.base import Regularizer
from regbench.schema import param


@dataclass
class WeightNoiseConfig:
    std: float = param(0.01, "standard deviation of the Gaussian noise added to each weight in a training step", ge=0.0)
    biases: bool = param(False, "also perturb biases")


class WeightNoise(Regularizer):
    name = "weight_noise"
    Config = WeightNoiseConfig
    summary = "train each step at weights w + N(0, std^2), update the clean weights"
    singles = {"weak": {"std": 0.003}, "mid": {"std": 0.01}, "strong": {"std": 0.03}}

    def __init__(self, configs, device="cpu"):
        super().__init__(configs, device)
        self.std = self.values("std")
        self.groups = {"weights": self.std, "biases": self.std * self.values("biases")}
        self.model, self.terms = None, []

    def _terms(self, model, seeds: torch.Tensor) -> list[tuple]:
        """(weights viewed [A, n], [A, 1] std, noise stream, scratch for the clean weights) per perturbed parameter,
        made once per model; A the members with noise, usually one consecutive block (member_span)."""
        if self.model is model:
            return self.terms
        self.model, self.terms = model, []
        for group, std in self.groups.items():
            on = std != 0
            if not bool(on.any()):
                continue
            rows = member_span(on)  # None: not consecutive, so every member, those without noise adding 0 exactly
            if rows is not None:
                std = std[rows]
            seeds_in = seeds if rows is None else seeds[rows]
            for i, p in enumerate(getattr(model, group)):
                w = model.per_member(p).detach()  # a view: writing it writes the parameter
                w = w if rows is None else w[rows]
                noise = rng.NormalStream(seeds_in, rng.stream_id(f"weight_noise.{group}.{i}"))
                self.terms.append((w, std.view(-1, 1).to(w.device), noise, torch.empty_like(w)))
        return self.terms

    def before_step(self, model, ctx):
        for w, std, noise, clean in self._terms(model, ctx.seeds):
            clean.copy_(w)
            w.add_(noise.normal(ctx.step, (w.shape[1],)).mul_(std))

    def after_backward(self, model, ctx):
        for w, *_, clean in self.terms:
            w.copy_(clean)
