"""Dropout (Srivastava et al., 2014): zero each hidden unit with probability p while training, rescale by
1/(1-p), identity at evaluation. Masks are drawn per member from its own seed, so members never share them."""

from __future__ import annotations

from dataclasses import dataclass

from regbench.regularizers.base import Regularizer
from regbench.schema import param


@dataclass
class DropoutConfig:
    p: float = param(0.2, "drop probability after each hidden layer", ge=0.0, lt=1.0)
    input_p: float = param(0.0, "drop probability on the input", ge=0.0, lt=1.0)


class Dropout(Regularizer):
    name = "dropout"
    Config = DropoutConfig
    summary = "dropout on hidden units (and optionally inputs)"
    singles = {"weak": {"p": 0.1}, "mid": {"p": 0.3}, "strong": {"p": 0.5}}
    grid = {"p": [0.1, 0.2, 0.3, 0.4, 0.5]}

    @classmethod
    def needs(cls, cfg):
        return frozenset({"dropout"} | ({"input_dropout"} if cfg.input_p > 0 else set()))

    def hints(self, hints):
        hints.dropout = self.values("p").to(hints.dropout.device)
        hints.input_dropout = self.values("input_p").to(hints.input_dropout.device)
