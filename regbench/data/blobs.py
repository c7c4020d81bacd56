"""Isotropic Gaussian blobs (scikit-learn's make_blobs): one class per blob, a table of `features` columns.

`noise` is each blob's standard deviation; centres are drawn in [-10, 10] per feature, so a noise of 1 gives
well-separated classes and a few units of noise make them overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from regbench.data.base import DatasetConfig, RawData, hold_out_test
from regbench.schema import param


@dataclass
class BlobsConfig(DatasetConfig):
    name: str = "blobs"
    num_samples: int = param(1000, "points generated (train and test together)", ge=10)
    centers: int = param(3, "blobs, one class each", ge=2, le=1000)
    features: int = param(2, "features (dimensions) per point", ge=1, le=100000)
    noise: float = param(1.0, "standard deviation of each blob", gt=0.0)
    data_seed: int = param(0, "seed of the generator", ge=0)
    test_fraction: float = param(0.2, "fraction held out as the test split", gt=0.0, lt=1.0)


def load(cfg: BlobsConfig) -> RawData:
    from sklearn.datasets import make_blobs

    x, y = make_blobs(
        n_samples=cfg.num_samples,
        n_features=cfg.features,
        centers=cfg.centers,
        cluster_std=cfg.noise,
        random_state=cfg.data_seed,
    )
    x, y = x.astype(np.float32), y.astype(np.int64)
    return RawData(*hold_out_test(x, y, cfg.test_fraction, cfg.data_seed), kind="table", n_classes=cfg.centers)
