"""What the user-file datasets (csv, npz) share: their config fields, label checks, and the test split.

Problems with the request (no path given, an unknown column) are UsageErrors, exit 2; problems with a file
(missing, unreadable, wrong shape, labels that are not class indices) are RunErrors, exit 1. Each is one line
that names the file.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from regbench.data.base import DatasetConfig, RawData, hold_out_test
from regbench.errors import RegbenchError, RunError, UsageError
from regbench.schema import param

# Labels are class indices and the output layer has one unit per class, so the largest label sets the head's size:
# a stray 2e9 would ask for a 2e9-wide layer. 10,000 classes is past any benchmark this tool is meant for.
MAX_CLASSES = 10_000
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass
class FileConfig(DatasetConfig):
    path: str = param("", "the file to read (required)")
    test_path: str = param("", "a separate test file; empty: hold out test_fraction of `path`")
    test_fraction: float = param(0.2, "fraction of `path` held out for testing (no test_path)", gt=0.0, lt=1.0)
    test_seed: int = param(0, "seed of the train/test split", ge=0)
    n_classes: int | None = param(None, "number of classes; empty: the largest label + 1", ge=2, le=MAX_CLASSES)

    def check(self, key: str) -> None:
        if not self.path:
            raise UsageError(f"{key}.path: required; the {self.name} file to read, e.g. {key}.path=data.{self.name}")


def existing(path: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():  # an OSError other than absence (a name too long, a folder not searchable) goes up
        raise RunError(f"{path}: no such file")
    return p


def unreadable(cfg, err: OSError, key: str = "dataset") -> RegbenchError:
    """An OSError the file system raised on a path of the dataset config `cfg` (a name too long for it, a folder
    that cannot be read) as one line naming the key that holds the path; a name too long is a usage error."""
    name = os.path.abspath(os.path.expanduser(str(err.filename))) if err.filename is not None else None
    for field, value in vars(cfg).items():
        if isinstance(value, str) and value and name is not None:
            given = os.path.abspath(os.path.expanduser(value))
            if name == given or name.startswith(given.rstrip(os.sep) + os.sep):
                cls = UsageError if err.errno == errno.ENAMETOOLONG else RunError
                return cls(f"{key}.{field}={_short(value)}: cannot read it ({err.strerror or err})")
    return RunError(f"{key}={cfg.name}: cannot read its data ({err})")


def _short(value: str, limit: int = 80) -> str:
    return value if len(value) <= limit else f"{value[: limit - 20]}...({len(value)} characters)"


def class_indices(y: np.ndarray, source: str, position=lambda i: f"y[{i}]") -> np.ndarray:
    """Labels as int64 class indices below MAX_CLASSES; otherwise a RunError naming the bad label and where it is."""

    def label(i: int):
        v = y[i].item()
        return int(v) if abs(v) < 2**53 else v  # whole by then: 3, not 3.0; a float past 2**53 as 1e+30

    if y.dtype.kind == "f":
        whole = np.isfinite(y) & (np.floor(y) == y)
        if not whole.all():
            i = int(np.flatnonzero(~whole)[0])
            raise RunError(f"{source}: label {y[i]} ({position(i)}) is not an integer class index")
    elif y.dtype.kind not in "iub":
        first = y.flat[0] if y.size else None
        raise RunError(f"{source}: labels must be integer class indices 0, 1, ..., got {first!r}")
    bad = np.flatnonzero(y < 0)
    if bad.size:
        i = int(bad[0])
        raise RunError(f"{source}: label {label(i)} ({position(i)}) is negative; labels are class indices 0, 1, ...")
    if y.size and y.max() >= MAX_CLASSES:
        i = int(np.argmax(y))
        raise RunError(
            f"{source}: label {label(i)} ({position(i)}) is too large; labels are class indices "
            f"0..{MAX_CLASSES - 1} (at most {MAX_CLASSES} classes)"
        )
    return y.astype(np.int64)


def finite_float32(x: np.ndarray, source: str, position) -> np.ndarray:
    """`x` as float32; a RunError naming the first value that is NaN, infinite, or beyond float32's range (it would
    be infinite once converted, and train to NaN). `position(i)` says where flat index i is in the file."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = x.astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(out))
    if bad.size:
        i = int(bad[0])
        raise RunError(
            f"{source}: {x.flat[i]} ({position(i)}) is not a finite float32 value; inputs must be finite with "
            f"|x| <= {FLOAT32_MAX:.4g}"
        )
    return out


def _count(n: int, unit: str) -> str:
    return f"{n} {unit if n != 1 else unit[:-1]}"


def finish(cfg: FileConfig, train: tuple, test: tuple | None, kind: str, source: str, unit="examples") -> RawData:
    """Split off a test set unless a test file was given, and settle the number of classes.

    `unit` is what the file holds one example per ("rows" of a CSV), for the message when there are too few.
    """
    x, y = train
    # one example each for training and validation (prepare holds the latter out), and one for test unless given
    need = 2 if test is not None else 3
    if len(y) < need:
        what = "training and validation" if test is not None else "training, validation and test"
        raise RunError(f"{source}: {_count(len(y), unit)}; need at least {need}, one each for {what}")
    if test is None:
        x_tr, y_tr, x_te, y_te = hold_out_test(x, y, cfg.test_fraction, cfg.test_seed)
        if len(y_tr) < 2:
            raise UsageError(
                f"dataset.test_fraction={cfg.test_fraction}: leaves {len(y_tr)} of the {_count(len(y), unit)} of "
                f"{source} for training and validation; must leave at least 2"
            )
    else:
        x_tr, y_tr, (x_te, y_te) = x, y, test
    classes = np.unique(np.concatenate([y_tr, y_te]))
    if len(classes) < 2:
        also = f" and in {cfg.test_path}" if test is not None else ""
        raise RunError(f"{source}: every label is {classes[0]}{also}; a classifier needs at least two classes")
    top = int(classes[-1])
    n_classes = cfg.n_classes if cfg.n_classes is not None else top + 1
    if top >= n_classes:
        src = cfg.test_path if test is not None and y_tr.max(initial=0) < top else source
        raise RunError(f"{src}: label {top} out of range for dataset.n_classes={n_classes} (labels 0..{n_classes - 1})")
    return RawData(x_tr, y_tr, x_te, y_te, kind=kind, n_classes=n_classes)
