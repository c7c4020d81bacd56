"""Dataset registry: name -> (schema, loader). Adding a dataset is one module plus one line here."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from itertools import islice
from typing import NamedTuple

from regbench.data import blobs, cifar10, csv_file, digits, fashion_mnist, mnist, mnist1d, moons, npz_file
from regbench.data.base import DatasetConfig, RawData, Splits, prepare
from regbench.data.files import unreadable
from regbench.errors import unknown_name
from regbench.paths import cache_home


class DatasetEntry(NamedTuple):
    schema: type
    load: Callable[..., RawData]
    summary: str


DATASETS: dict[str, DatasetEntry] = {
    "mnist1d": DatasetEntry(mnist1d.Mnist1dConfig, mnist1d.load, "MNIST-1D sequences (40 samples, 10 classes)"),
    "digits": DatasetEntry(digits.DigitsConfig, digits.load, "scikit-learn 8x8 digit images (10 classes)"),
    "moons": DatasetEntry(moons.MoonsConfig, moons.load, "two interleaving half-moons, 2 features (generated)"),
    "blobs": DatasetEntry(blobs.BlobsConfig, blobs.load, "Gaussian blobs, one class each (generated)"),
    "mnist": DatasetEntry(mnist.MnistConfig, mnist.load, "MNIST 28x28 digits (IDX files; root or download)"),
    "fashion_mnist": DatasetEntry(
        fashion_mnist.FashionMnistConfig, fashion_mnist.load, "Fashion-MNIST 28x28 clothes (IDX; root or download)"
    ),
    "cifar10": DatasetEntry(cifar10.Cifar10Config, cifar10.load, "CIFAR-10 32x32 RGB (binary files; root or download)"),
    "csv": DatasetEntry(csv_file.CsvConfig, csv_file.load, "your CSV file: a label column and numeric features"),
    "npz": DatasetEntry(npz_file.NpzConfig, npz_file.load, "your .npz file: arrays x and y"),
}


def get(name: str) -> DatasetEntry:
    if name not in DATASETS:
        raise unknown_name("dataset", name, DATASETS)
    return DATASETS[name]


# The last datasets loaded: a run's preflight loads its dataset to check it, and training then takes the same
# tensors (which it only reads) instead of reading the files again. Two: a sweep over two datasets alternates
# between them; more would keep CIFAR-sized arrays alive for nothing.
KEPT = 2
_kept: OrderedDict[tuple, Splits] = OrderedDict()


def _stamp(path: str) -> tuple:
    """What says a path's content changed: size and mtime of a file, or of a folder's entries (not recursed)."""
    try:
        p = os.path.expanduser(path)
        st = os.stat(p)
        if not os.path.isdir(p):
            return (st.st_size, st.st_mtime_ns)
        with os.scandir(p) as entries:  # a dataset's folder holds a few files; a few hundred are plenty
            inside = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in islice(entries, 256))
        return (st.st_mtime_ns, *inside)
    except OSError:
        return ()


def _key(cfg: DatasetConfig) -> tuple:
    paths = tuple(_stamp(v) for v in vars(cfg).values() if isinstance(v, str) and v)
    home = str(cache_home())
    # the loader itself, not its id: a replaced loader (a test's) is another key, and its id is never reused
    return (repr(cfg), get(cfg.name).load, home, _stamp(home), paths)


def load(cfg: DatasetConfig) -> Splits:
    """The dataset's train/validation/test splits, on the CPU; loaded again only when its config or its files
    changed since one of the last KEPT loads."""
    key = _key(cfg)
    if key in _kept:
        _kept.move_to_end(key)
        return _kept[key]
    try:
        raw = get(cfg.name).load(cfg)
    except OSError as e:  # what the loaders let through is about a path the config names
        raise unreadable(cfg, e) from None
    splits = prepare(raw, cfg)
    _kept[_key(cfg)] = splits  # as the files are now: loading may have written them (a download, MNIST-1D)
    while len(_kept) > KEPT:
        _kept.popitem(last=False)
    return splits


__all__ = ["DATASETS", "DatasetConfig", "RawData", "Splits", "get", "load", "prepare"]
