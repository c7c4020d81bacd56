"""What every dataset hands the engine: train / validation / test tensors plus the data's kind.

A loader returns the dataset's own train and test arrays; `prepare` then applies what every dataset shares, in
this order, all fixed by `split_seed` and the same for every member:
  1. the validation split, held out of the training data first, so it never depends on the knobs below;
  2. `train_size`: a random subset of what is left (a prefix of one permutation, so smaller subsets nest inside
     larger ones);
  3. `label_noise`: that fraction of the training labels replaced by labels drawn uniformly over the classes
     (Zhang et al. 2017; a drawn label may equal the true one, as in the paper); validation and test keep theirs;
  4. standardisation with statistics of the final training split only: one mean and std for a sequence, one per
     channel for an image, one per feature (column) for a table. Nothing from validation or test leaks in.
Integer pixel data (uint8) are scaled to [0, 1] first, so `standardize=false` still gives sensible inputs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from regbench.errors import UsageError
from regbench.schema import param

KINDS = ("sequence", "image", "table")
# The generators' seeds go to numpy's legacy RandomState (scikit-learn, mnist1d), which takes 0 <= seed < 2**32.
MAX_SEED = 2**32 - 1
# Points a generated table (moons, blobs) may have: 10 million 2-D points take ~10 s and 160 MB to make; far
# more is a typo (1e10 would run for hours, then fail for memory), and no toy benchmark needs it.
MAX_GENERATED = 10_000_000
log = logging.getLogger("regbench")


@dataclass
class DatasetConfig:
    """Fields every dataset has; each dataset's schema subclasses this."""

    name: str = ""
    val_fraction: float = param(0.1, "fraction of the training data held out for validation", gt=0.0, lt=1.0)
    split_seed: int = param(0, "seed of the validation split, the train_size subset and the label noise", ge=0)
    standardize: bool = param(True, "standardise inputs with the training split's statistics (per channel)")
    train_size: int | None = param(None, "train on this many examples (a random subset, after validation)", ge=1)
    label_noise: float = param(0.0, "fraction of training labels made random (1.0: all)", ge=0.0, le=1.0)
    bootstrap: bool = param(
        False,
        "each seed trains on its own bootstrap resample of the training split (for bias-variance; baseline and "
        "regularized members of a seed share it)",
        later=True,
    )


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
    bootstrap: bool = False  # each seed's minibatches drawn from its own resample of the training split

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


# Independent random streams under one split_seed: changing train_size does not redraw the label noise's choices.
_NOISE_STREAM = 1


def noisy_labels(y: np.ndarray, fraction: float, n_classes: int, seed: int) -> np.ndarray:
    """`y` with round(fraction * len(y)) labels, chosen at random, replaced by uniform draws over the classes.

    The examples hit at a lower fraction are a subset of those hit at a higher one, with the same new labels, so
    a sweep over label_noise adds noise to a fixed set rather than drawing a fresh one each time.
    """
    if fraction == 0.0:
        return y
    rng = np.random.default_rng([seed, _NOISE_STREAM])
    order = rng.permutation(len(y))
    random_labels = rng.integers(0, n_classes, len(y))
    hit = order[: int(round(fraction * len(y)))]
    out = y.copy()
    out[hit] = random_labels[hit]
    return out


def _stat_axes(kind: str, ndim: int) -> tuple[int, ...]:
    if kind == "table":
        return (0,)  # per feature: columns of a table carry different units
    if kind == "image" and ndim == 4:
        return (0, 2, 3)  # per colour channel, [N, C, H, W]
    return tuple(range(ndim))  # one mean and std for a sequence


def _as_float(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype.kind == "f":
        return a  # float64 data are standardised in float64, then handed over as float32
    return a.astype(np.float32)


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
    if cfg.train_size is not None:
        if cfg.train_size > len(train_idx):
            raise UsageError(
                f"dataset.train_size={cfg.train_size}: larger than the {len(train_idx)} training examples left "
                f"after holding out {n_val} for validation"
            )
        train_idx = train_idx[: cfg.train_size]
    classes = np.unique(raw.y_train[train_idx])
    if len(classes) == 1:  # the data hold more (the file loaders refuse a single class), this split does not
        source = getattr(cfg, "path", "") or f"dataset={cfg.name}"
        log.warning(
            "%s: the training split holds only class %d of %d (%d examples); the network can learn nothing but that",
            source,
            classes[0],
            raw.n_classes,
            len(train_idx),
        )
    x_tr, x_val, x_te = (_as_float(a) for a in (raw.x_train[train_idx], raw.x_train[val_idx], raw.x_test))
    y_tr = noisy_labels(raw.y_train[train_idx], cfg.label_noise, raw.n_classes, cfg.split_seed)
    y_val, y_te = raw.y_train[val_idx], raw.y_test
    if cfg.standardize:
        axes = _stat_axes(raw.kind, x_tr.ndim)
        # accumulated in float64: float32 sums lose digits on large splits and on features far from zero
        mean = x_tr.mean(axis=axes, keepdims=True, dtype=np.float64)
        std = x_tr.std(axis=axes, keepdims=True, dtype=np.float64)
        std[std == 0] = 1.0  # a constant feature stays constant instead of becoming NaN
        mean, std = mean.astype(x_tr.dtype), std.astype(x_tr.dtype)
        x_tr, x_val, x_te = ((a - mean) / std for a in (x_tr, x_val, x_te))

    def f32(a):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)

    def i64(a):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.int64)

    return Splits(
        cfg.name, raw.kind, raw.n_classes, f32(x_tr), i64(y_tr), f32(x_val), i64(y_val), f32(x_te), i64(y_te),
        cfg.bootstrap,
    )  # fmt: skip


def hold_out_test(x: np.ndarray, y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_test, y_test): a random `fraction` set aside as the test split, for datasets that
    come without one."""
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = max(1, int(round(len(y) * fraction)))
    te, tr = order[:n_test], order[n_test:]
    return x[tr], y[tr], x[te], y[te]
