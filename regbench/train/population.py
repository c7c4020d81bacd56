"""Members of a population: who trains, with which regularizers, paired by seed.

A job's population is {baseline, regularized} x seeds. Members with the same seed share initial weights and
minibatch order, so the two arms differ only by their regularizers: the paired design the report relies on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BASELINE = "baseline"


@dataclass
class Member:
    arm: str
    seed: int
    regularizers: dict[str, Any] = field(default_factory=dict)  # name -> validated config

    def params(self) -> dict[str, dict]:
        return {name: dict(vars(c)) for name, c in self.regularizers.items()}


def arm_name(regs: dict[str, Any]) -> str:
    return "+".join(regs) if regs else BASELINE


def members_for(spec) -> list[Member]:
    """Baseline and (when any regularizer is chosen) the regularized arm, for each seed."""
    seeds = [spec.trainer.seed + i for i in range(spec.trainer.seeds)]
    out = [Member(BASELINE, s) for s in seeds]
    if spec.regularizers:
        out += [Member(arm_name(spec.regularizers), s, dict(spec.regularizers)) for s in seeds]
    return out
