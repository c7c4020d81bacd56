"""Dataset registry: name -> (schema, loader). Adding a dataset is one module plus one line here."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from regbench.data import blobs, cifar10, csv_file, digits, fashion_mnist, mnist, mnist1d, moons, npz_file
from regbench.data.base import DatasetConfig, RawData, Splits, prepare
from regbench.errors import unknown_name


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


def load(cfg: DatasetConfig) -> Splits:
    return prepare(get(cfg.name).load(cfg), cfg)


__all__ = ["DATASETS", "DatasetConfig", "RawData", "Splits", "get", "load", "prepare"]
