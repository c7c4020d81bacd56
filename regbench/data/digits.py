"""scikit-learn's 8x8 handwritten digits (1797 images), bundled inside the scikit-learn wheel: no download."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from regbench.data.base import DatasetConfig, RawData, hold_out_test
from regbench.schema import param


@dataclass
class DigitsConfig(DatasetConfig):
    name: str = "digits"
    test_fraction: float = param(0.2, "fraction held out as the test split", gt=0.0, lt=1.0)
    test_seed: int = param(0, "seed of the train/test split", ge=0)


def load(cfg: DigitsConfig) -> RawData:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images.astype(np.float32)[:, None]  # [N, 1, 8, 8]: an image, so the CNN uses 2-D convolutions
    y = d.target.astype(np.int64)
    return RawData(*hold_out_test(x, y, cfg.test_fraction, cfg.test_seed), kind="image", n_classes=10)
