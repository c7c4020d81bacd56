"""Small dataset files in the real formats, written by the tests themselves: gzip IDX (MNIST, Fashion-MNIST) and
CIFAR-10 binary records, loose or in the official archive's layout. Nothing real is ever downloaded."""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import tarfile
from pathlib import Path

import numpy as np

IDX_NAMES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CIFAR_TRAIN = [f"data_batch_{i}.bin" for i in range(1, 6)]


def idx_bytes(a: np.ndarray) -> bytes:
    """The IDX layout: 0, 0, type 0x08 (unsigned byte), ndim, big-endian uint32 dims, then the values."""
    header = bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    return header + a.astype(np.uint8).tobytes()


def write_idx_folder(root: Path, n_train: int = 60, n_test: int = 20, seed: int = 0) -> dict[str, str]:
    """Four gzip IDX files of random 28x28 images with labels 0..9; returns {name: sha256}."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    sums = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        for name, array in zip(IDX_NAMES[split], (images, labels)):
            blob = gzip.compress(idx_bytes(array), mtime=0)
            (root / name).write_bytes(blob)
            sums[name] = hashlib.sha256(blob).hexdigest()
    return sums


def cifar_records(n: int, seed: int) -> bytes:
    """n CIFAR-10 binary records: a label byte then 3072 pixel bytes (red plane, green plane, blue plane)."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 10).astype(np.uint8)[:, None]
    pixels = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
    return np.concatenate([labels, pixels], axis=1).tobytes()


def cifar_files(per_batch: int = 12, n_test: int = 20) -> dict[str, bytes]:
    files = {name: cifar_records(per_batch, i) for i, name in enumerate(CIFAR_TRAIN)}
    files["test_batch.bin"] = cifar_records(n_test, 99)
    return files


def write_cifar_folder(root: Path, **kw) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, blob in cifar_files(**kw).items():
        (root / name).write_bytes(blob)


def write_cifar_archive(path: Path, **kw) -> str:
    """The official archive's layout, cifar-10-batches-bin/<file>, as a .tar.gz; returns its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in cifar_files(**kw).items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return hashlib.sha256(path.read_bytes()).hexdigest()
