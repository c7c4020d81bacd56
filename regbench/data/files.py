"""What the user-file datasets (csv, npz) share: their config fields, label checks, and the test split.

Problems with the request (no path given, an unknown column) are UsageErrors, exit 2; problems with a file
(missing, unreadable, wrong shape, labels that are not class indices) are RunErrors, exit 1. Each is one line
that names the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from regbench.data.base import DatasetConfig, RawData, hold_out_test
from regbench.errors import RunError, UsageError
from regbench.schema import param


@dataclass
class FileConfig(DatasetConfig):
    path: str = param("", "the file to read (required)")
    test_path: str = param("", "a separate test file; empty: hold out test_fraction of `path`")
    test_fraction: float = param(0.2, "fraction of `path` held out for testing (no test_path)", gt=0.0, lt=1.0)
    test_seed: int = param(0, "seed of the train/test split", ge=0)
    n_classes: int | None = param(None, "number of classes; empty: the largest label + 1", ge=2)

    def check(self, key: str) -> None:
        if not self.path:
            raise UsageError(f"{key}.path: required; the {self.name} file to read, e.g. {key}.path=data.{self.name}")


def existing(path: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise RunError(f"{path}: no such file")
    return p


def class_indices(y: np.ndarray, source: str, position=lambda i: f"y[{i}]") -> np.ndarray:
    """Labels as int64 class indices; otherwise a RunError naming the first bad label and where it is."""
    if y.dtype.kind in "iub":
        bad = np.flatnonzero(y < 0)
        if bad.size:
            i = int(bad[0])
            raise RunError(f"{source}: label {y[i]} ({position(i)}) is negative; labels are class indices 0, 1, ...")
        return y.astype(np.int64)
    if y.dtype.kind == "f":
        whole = np.isfinite(y) & (np.floor(y) == y)
        if not whole.all():
            i = int(np.flatnonzero(~whole)[0])
            raise RunError(f"{source}: label {y[i]} ({position(i)}) is not an integer class index")
        return class_indices(y.astype(np.int64), source, position)
    first = y.flat[0] if y.size else None
    raise RunError(f"{source}: labels must be integer class indices 0, 1, ..., got {first!r}")


def finish(cfg: FileConfig, train: tuple, test: tuple | None, kind: str, source: str) -> RawData:
    """Split off a test set unless a test file was given, and settle the number of classes."""
    x, y = train
    if test is None:
        x_tr, y_tr, x_te, y_te = hold_out_test(x, y, cfg.test_fraction, cfg.test_seed)
    else:
        x_tr, y_tr, (x_te, y_te) = x, y, test
    top = int(max(y_tr.max(initial=0), y_te.max(initial=0)))
    n_classes = cfg.n_classes if cfg.n_classes is not None else top + 1
    if top >= n_classes:
        src = cfg.test_path if test is not None and y_tr.max(initial=0) < top else source
        raise RunError(f"{src}: label {top} out of range for dataset.n_classes={n_classes} (labels 0..{n_classes - 1})")
    if n_classes < 2:
        raise RunError(f"{source}: every label is 0; a classifier needs at least two classes")
    return RawData(x_tr, y_tr, x_te, y_te, kind=kind, n_classes=n_classes)
