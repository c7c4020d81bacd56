"""What every dataset hands the engine: train / validation / test tensors plus the data's kind.

A loader returns the dataset's own train and test arrays; `prepare` then applies what every dataset shares: the
validation split held out of the training data (fixed by `split_seed`, the same for every member), and inputs
standardised with statistics of the training split only, so nothing from validation or test leaks in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from regbench.errors import UsageError
from regbench.schema import param

KINDS = ("sequence", "image", "table")


@dataclass
class DatasetConfig:
    """Fields every dataset has; each dataset's schema subclasses this."""

    name: str = ""
    val_fraction: float = param(0.1, "fraction of the training data held out for validation", gt=0.0, lt=1.0)
    split_seed: int = param(0, "seed of the train/validation split (shared by all members)", ge=0)
    standardize: bool = param(True, "standardise inputs with the training split's mean and std")


@dataclass
class RawData:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    kind: str  # one of KINDS: decides which models and augmentations apply
    n_classes: int


@dataclass
class Splits:
    name: str
    kind: str
    n_classes: int
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def split(self, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, f"x_{which}"), getattr(self, f"y_{which}")

    def to(self, device) -> Splits:
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return Splits(**moved)

    def sizes(self) -> dict[str, int]:
        return {s: len(getattr(self, f"y_{s}")) for s in ("train", "val", "test")}


def prepare(raw: RawData, cfg: DatasetConfig) -> Splits:
    n = len(raw.y_train)
    n_val = int(round(n * cfg.val_fraction))
    if n_val < 1 or n - n_val < 1:
        raise UsageError(
            f"dataset.val_fraction={cfg.val_fraction}: leaves {n - n_val} training and {n_val} validation "
            f"examples out of {n}; must leave at least one of each"
        )
    order = np.random.default_rng(cfg.split_seed).permutation(n)
    val_idx, train_idx = order[:n_val], order[n_val:]
    x_tr, y_tr = raw.x_train[train_idx], raw.y_train[train_idx]
    x_val, y_val = raw.x_train[val_idx], raw.y_train[val_idx]
    x_te, y_te = raw.x_test, raw.y_test
    if cfg.standardize:
        mean, std = x_tr.mean(), x_tr.std()
        std = std if std > 0 else 1.0
        x_tr, x_val, x_te = ((a - mean) / std for a in (x_tr, x_val, x_te))

    def f32(a):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)

    def i64(a):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.int64)

    return Splits(cfg.name, raw.kind, raw.n_classes, f32(x_tr), i64(y_tr), f32(x_val), i64(y_val), f32(x_te), i64(y_te))
