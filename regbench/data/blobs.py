"""Isotropic Gaussian blobs (scikit-learn's make_blobs): one class per blob, a table of `features` columns.

`noise` is each blob's standard deviation; centres are drawn in [-10, 10] per feature, so a noise of 1 gives
well-separated classes and a few units of noise make them overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from regbench.data.base import MAX_GENERATED, MAX_SEED, DatasetConfig, RawData, hold_out_test
from regbench.errors import UsageError
from regbench.schema import param

MAX_VALUES = 10 * MAX_GENERATED  # 800 MB as make_blobs' float64


@dataclass
class BlobsConfig(DatasetConfig):
    name: str = "blobs"
    num_samples: int = param(1000, "points generated (train and test together)", ge=10, le=MAX_GENERATED)
    centers: int = param(3, "blobs, one class each", ge=2, le=1000)
    features: int = param(2, "features (dimensions) per point", ge=1, le=100000)
    noise: float = param(1.0, "standard deviation of each blob", gt=0.0)
    data_seed: int = param(0, "seed of the generator", ge=0, le=MAX_SEED)
    test_fraction: float = param(0.2, "fraction held out as the test split", gt=0.0, lt=1.0)

    def check(self, key: str) -> None:
        # each bound alone still allows 10 million points of 100,000 features: 8 TB
        if self.num_samples * self.features > MAX_VALUES:
            raise UsageError(
                f"{key}.num_samples={self.num_samples}: with {key}.features={self.features} that is "
                f"{self.num_samples * self.features} values; allowed: num_samples x features <= {MAX_VALUES}"
            )


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
