"""MNIST-1D (Greydanus, 2020): 40-sample 1-D digit signals, generated offline by the `mnist1d` package.

`make_dataset` builds the set from templates; `get_dataset` would download a pickle, so it is never called. Its
defaults (5000 examples, 4000 train / 1000 test, seed 42) reproduce the published set.

Building it costs ~5 s a process on 2 CPU cores (1.7 s importing mnist1d and scipy, 3.3 s generating), more than the
default comparison's training, and every process of a joblib or Slurm sweep would pay it again. So the arrays are kept
in regbench's cache ($REGBENCH_CACHE or ~/.cache/regbench, as downloads are), one file per (size, seed, package
version), loaded in milliseconds. The file is written to a temporary name and renamed into place, so a crash leaves
none or a whole one; one that cannot be read is generated again and replaced, and a cache that cannot be written is
done without.
"""

from __future__ import annotations

import io
import logging
import random
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path

import numpy as np

from regbench.atomic import atomic_write
from regbench.data.base import MAX_SEED, DatasetConfig, RawData
from regbench.paths import cache_home
from regbench.schema import param

# 200 times the published set; generating takes ~1.7 ms an example on 2 cores (half an hour at the bound, once,
# then cached) and holds 40 float64 samples each: beyond it a typo would look like a hang.
MAX_SAMPLES = 1_000_000


@dataclass
class Mnist1dConfig(DatasetConfig):
    name: str = "mnist1d"
    num_samples: int = param(5000, "examples generated (80% train, 20% test, as published)", ge=100, le=MAX_SAMPLES)
    data_seed: int = param(42, "seed of the generator (42 reproduces the published set)", ge=0, le=MAX_SEED)


log = logging.getLogger(__name__)
_ARRAYS = ("x", "y", "x_test", "y_test")


def cache_file(num_samples: int, data_seed: int) -> Path:
    return cache_home() / "mnist1d" / f"mnist1d-{num_samples}-seed{data_seed}-v{version('mnist1d')}.npz"


@lru_cache(maxsize=4)
def _generate(num_samples: int, data_seed: int) -> RawData:
    path = cache_file(num_samples, data_seed)
    try:
        with np.load(path, allow_pickle=False) as f:
            d = {k: f[k] for k in _ARRAYS}
        if (
            len(d["x"]) != len(d["y"])
            or len(d["x_test"]) != len(d["y_test"])
            or len(d["x"]) + len(d["y_test"]) != num_samples
        ):
            raise ValueError(f"{path}: not the {num_samples} examples its name says")
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):  # absent, or not a whole file of ours
        d = _make(num_samples, data_seed)
        _store(path, d)
    return RawData(d["x"], d["y"], d["x_test"], d["y_test"], kind="sequence", n_classes=10)


def _store(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    try:
        atomic_write(path, buf.getvalue())
    except OSError as e:  # a read-only or full cache: generating again next time is all it costs
        log.debug("MNIST-1D not cached at %s: %s", path, e)


def _make(num_samples: int, data_seed: int) -> dict[str, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = num_samples, data_seed
    # make_dataset reseeds the global `random` and numpy generators; leave them as the caller had them.
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        d = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {k: np.asarray(d[k]) for k in _ARRAYS}


def load(cfg: Mnist1dConfig) -> RawData:
    return _generate(cfg.num_samples, cfg.data_seed)
