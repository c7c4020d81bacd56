"""Dataset registry: name -> (schema, loader). Adding a dataset is one module plus one line here."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from regbench.data import digits, mnist1d
from regbench.data.base import DatasetConfig, RawData, Splits, prepare
from regbench.errors import unknown_name


class DatasetEntry(NamedTuple):
    schema: type
    load: Callable[..., RawData]
    summary: str


DATASETS: dict[str, DatasetEntry] = {
    "mnist1d": DatasetEntry(mnist1d.Mnist1dConfig, mnist1d.load, "MNIST-1D sequences (40 samples, 10 classes)"),
    "digits": DatasetEntry(digits.DigitsConfig, digits.load, "scikit-learn 8x8 digit images (10 classes)"),
}


def get(name: str) -> DatasetEntry:
    if name not in DATASETS:
        raise unknown_name("dataset", name, DATASETS)
    return DATASETS[name]


def load(cfg: DatasetConfig) -> Splits:
    return prepare(get(cfg.name).load(cfg), cfg)


__all__ = ["DATASETS", "DatasetConfig", "RawData", "Splits", "get", "load", "prepare"]
