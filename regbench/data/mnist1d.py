"""MNIST-1D (Greydanus, 2020): 40-sample 1-D digit signals, generated offline by the `mnist1d` package.

`make_dataset` builds the set from templates in about a second; `get_dataset` would download a pickle, so it is
never called. Its defaults (5000 examples, 4000 train / 1000 test, seed 42) reproduce the published set.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from regbench.data.base import DatasetConfig, RawData
from regbench.schema import param


@dataclass
class Mnist1dConfig(DatasetConfig):
    name: str = "mnist1d"
    num_samples: int = param(5000, "examples generated (80% train, 20% test, as published)", ge=100)
    data_seed: int = param(42, "seed of the generator (42 reproduces the published set)", ge=0)


@lru_cache(maxsize=4)
def _generate(num_samples: int, data_seed: int) -> RawData:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = num_samples, data_seed
    # make_dataset reseeds the global `random` and numpy generators; leave them as the caller had them.
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        d = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return RawData(d["x"], d["y"], d["x_test"], d["y_test"], kind="sequence", n_classes=10)


def load(cfg: Mnist1dConfig) -> RawData:
    return _generate(cfg.num_samples, cfg.data_seed)
