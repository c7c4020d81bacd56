"""Stochastic depth (Huang et al., 2016): while training, skip each residual block's branch for a whole example
with some probability, keeping the identity shortcut, and scale kept branches by 1/(1-p); identity at evaluation.

The probability decays linearly with depth, as in the paper: the l-th of L blocks drops with p * l / L, so the
first block is almost always kept and the last drops with p. Models with residual blocks (model=resnet) take it;
the rest refuse it before launch (needs "residual"). Members draw their own masks from their own seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

from regbench.regularizers.base import Regularizer
from regbench.schema import param


@dataclass
class StochasticDepthConfig:
    p: float = param(
        0.2, "drop probability of the last residual block (linear decay to 0 at the first)", ge=0.0, lt=1.0
    )


class StochasticDepth(Regularizer):
    name = "stochastic_depth"
    Config = StochasticDepthConfig
    summary = "skip residual branches per example (linear decay of p with depth); residual models only"
    singles = {"weak": {"p": 0.1}, "mid": {"p": 0.2}, "strong": {"p": 0.5}}

    @classmethod
    def needs(cls, cfg):
        return frozenset({"residual"})

    def hints(self, hints):
        hints.stochastic_depth = self.values("p").to(hints.stochastic_depth.device)
