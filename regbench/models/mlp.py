"""Multi-layer perceptron: inputs flattened, `depth` hidden layers of `width` units, ReLU.

This is the readable model: layers and a forward pass, trained through autograd. Its fast path (a hand-written
training step, and an evaluation forward into reused buffers) is in mlp_fast.py; trainer.fast=false trains
without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from regbench.models import fast, mlp_fast
from regbench.models.base import MemberModel, ModelHints
from regbench.models.layers import BatchedLinear, Context, MemberBatchNorm, MemberDropout
from regbench.schema import param


@dataclass
class MlpConfig:
    name: str = "mlp"
    width: int = param(100, "units per hidden layer", ge=1, le=65536)
    depth: int = param(2, "number of hidden layers", ge=0, le=64)


class MLP(MemberModel):
    def __init__(self, cfg: MlpConfig, input_shape, kind: str, n_classes: int, gens, hints: ModelHints):
        super().__init__(len(gens))
        self.n_in = len(input_shape)
        fan_in = math.prod(input_shape)
        self.input_drop = MemberDropout(hints.input_dropout, "dropout.input") if hints.input_dropout.any() else None
        self.hidden = nn.ModuleList()
        self.bns = nn.ModuleList()
        self.drops = nn.ModuleList()
        for i in range(cfg.depth):
            self.hidden.append(BatchedLinear(gens, fan_in, cfg.width))
            if hints.batch_norm.any():
                self.bns.append(MemberBatchNorm(hints.batch_norm, cfg.width))
                self.bns[-1].follows(self.hidden[-1].bias)
            if hints.dropout.any():
                self.drops.append(MemberDropout(hints.dropout, f"dropout.{i}"))
            fan_in = cfg.width
        self.head = BatchedLinear(gens, fan_in, n_classes)
        for lin in [*self.hidden, self.head]:
            self.weights.append(lin.weight)
            self.biases.append(lin.bias)
        for bn in self.bns:
            self.norms += [bn.weight, bn.bias]
        self.scratch = fast.Scratch()  # the fast evaluation's reused buffers (never saved)

    def forward(self, x, ctx: Context):
        shared = x.dim() == self.n_in + 1  # one [N, ...] input for every member: evaluation
        if ctx.fast and shared and not ctx.train and not self.bns and not torch.is_grad_enabled():
            return mlp_fast.evaluate(self, x)  # the same bits, into reused buffers
        h = x.flatten(-self.n_in) if self.n_in > 1 else x  # [K, B, F] in training, shared [N, F] at evaluation
        if self.input_drop is not None:
            h = self.input_drop(h, ctx)
        for i, lin in enumerate(self.hidden):
            h = lin(h)
            if self.bns:
                h = self.bns[i](h, ctx)
            h = h.relu()
            if self.drops:
                h = self.drops[i](h, ctx)
        return self.head(h)

    def fast_step(self, flushed: bool = False) -> mlp_fast.TrainStep | None:
        """The hand-written training step (mlp_fast.TrainStep); batch norm has none."""
        return None if self.bns else mlp_fast.TrainStep(self, flushed)
