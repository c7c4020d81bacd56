"""Batch normalization (Ioffe and Szegedy, 2015) after each hidden linear or convolutional layer, before ReLU.

Training normalises with the batch's statistics, evaluation with running averages; each member has its own
statistics, scale and shift (see models.layers.MemberBatchNorm). Members without it run the plain network.
"""

from __future__ import annotations

from dataclasses import dataclass

from regbench.regularizers.base import Regularizer


@dataclass
class BatchNormConfig:
    pass


class BatchNorm(Regularizer):
    name = "batch_norm"
    Config = BatchNormConfig
    summary = "batch norm after each hidden layer (running statistics at evaluation)"
    singles = {"": {}}  # no strength: one cell

    @classmethod
    def needs_autograd(cls):
        return True  # the hand-written MLP step has no batch norm; in any member it is in the whole population's model

    @classmethod
    def needs(cls, cfg):
        return frozenset({"batch_norm"})

    def hints(self, hints):
        hints.batch_norm = self.active.to(hints.batch_norm.device)
