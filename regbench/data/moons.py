"""Two interleaving half-moons in the plane (scikit-learn's make_moons): two classes, a table of 2 features.

Small and fast, and the noise knob moves the classes' overlap, so a network's fit to noise shows within seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from regbench.data.base import MAX_GENERATED, MAX_SEED, DatasetConfig, RawData, hold_out_test
from regbench.schema import param


@dataclass
class MoonsConfig(DatasetConfig):
    name: str = "moons"
    num_samples: int = param(1000, "points generated (train and test together)", ge=10, le=MAX_GENERATED)
    noise: float = param(0.2, "std of the Gaussian noise added to each point", ge=0.0)
    data_seed: int = param(0, "seed of the generator", ge=0, le=MAX_SEED)
    test_fraction: float = param(0.2, "fraction held out as the test split", gt=0.0, lt=1.0)


def load(cfg: MoonsConfig) -> RawData:
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=cfg.num_samples, noise=cfg.noise, random_state=cfg.data_seed)
    x, y = x.astype(np.float32), y.astype(np.int64)
    return RawData(*hold_out_test(x, y, cfg.test_fraction, cfg.data_seed), kind="table", n_classes=2)
