"""CIFAR-10 (Krizhevsky, 2009), the binary version: 50000 train / 10000 test 32x32 colour images, 10 classes.

Never the pickle version, which executes code when loaded. Each .bin file is a run of 3073-byte records: one
label byte, then 1024 red, 1024 green and 1024 blue bytes (rows of 32). `dataset.root` may hold the six .bin
files (or their `cifar-10-batches-bin/` folder) or the official archive; a download keeps the verified archive
in the cache and reads those six members out of it, extracting nothing else.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from regbench.data.base import RawData
from regbench.data.download import DownloadConfig, locate
from regbench.errors import RunError

BASE_URL = "https://www.cs.toronto.edu/~kriz"
ARCHIVE = "cifar-10-binary.tar.gz"
ARCHIVE_SHA256 = "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"
FOLDER = "cifar-10-batches-bin"
TRAIN = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST = ["test_batch.bin"]
_RECORD = 1 + 3 * 32 * 32


@dataclass
class Cifar10Config(DownloadConfig):
    name: str = "cifar10"


def read_records(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    if len(data) == 0 or len(data) % _RECORD:
        raise RunError(f"{source}: {len(data)} bytes is not a whole number of {_RECORD}-byte CIFAR-10 records")
    rec = np.frombuffer(data, dtype=np.uint8).reshape(-1, _RECORD)
    y = rec[:, 0].astype(np.int64)
    if y.max() > 9:
        raise RunError(f"{source}: label {int(y.max())} out of range 0..9")
    return rec[:, 1:].reshape(-1, 3, 32, 32), y


def _join(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _from_folder(folder: Path) -> RawData:
    def read(names):
        return _join([read_records((folder / n).read_bytes(), str(folder / n)) for n in names])

    return RawData(*read(TRAIN), *read(TEST), kind="image", n_classes=10)


def _from_archive(path: Path) -> RawData:
    try:
        with tarfile.open(path, "r:gz") as tar:

            def read(names):
                parts = []
                for n in names:
                    member = tar.extractfile(f"{FOLDER}/{n}")  # by exact name: no path from the archive is used
                    if member is None:
                        raise KeyError(n)
                    parts.append(read_records(member.read(), f"{path}:{n}"))
                return _join(parts)

            train, test = read(TRAIN), read(TEST)
    except KeyError as e:
        raise RunError(f"{path}: no {FOLDER}/{e.args[0]} inside; is this the CIFAR-10 binary archive?") from None
    except (tarfile.TarError, OSError, EOFError) as e:
        raise RunError(f"{path}: not a readable .tar.gz archive ({e})") from None
    return RawData(*train, *test, kind="image", n_classes=10)


def load(cfg: Cifar10Config) -> RawData:
    if cfg.root:
        root = Path(cfg.root).expanduser()
        for folder in (root, root / FOLDER):
            if all((folder / n).is_file() for n in TRAIN + TEST):
                return _from_folder(folder)
        if not (root / ARCHIVE).is_file():
            raise RunError(
                f"dataset.root={cfg.root}: neither the six CIFAR-10 .bin files ({', '.join(TRAIN + TEST)}) nor "
                f"{ARCHIVE} found there"
            )
        return _from_archive(root / ARCHIVE)
    return _from_archive(locate(cfg, cfg.name, {ARCHIVE: ARCHIVE_SHA256}, BASE_URL) / ARCHIVE)
