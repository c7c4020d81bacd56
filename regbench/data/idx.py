"""The IDX format of the MNIST family: a big-endian header (two zero bytes, a type code, the number of dimensions,
then each dimension as a 32-bit integer) followed by the values. regbench reads unsigned-byte IDX files only,
gzip-compressed, which is what the MNIST family ships."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from regbench.errors import RunError

_UBYTE = 0x08


def read_idx(path: Path) -> np.ndarray:
    """An unsigned-byte IDX array from a .gz file; RunError naming the file if it is anything else."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise RunError(f"{path}: not a readable gzip file ({e})") from None
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != _UBYTE:
        raise RunError(f"{path}: not an unsigned-byte IDX file (bad header)")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) - header != int(np.prod(shape)):
        raise RunError(f"{path}: IDX header says {shape} but holds {len(data) - header} values")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_idx_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    x, y = read_idx(images), read_idx(labels)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise RunError(f"{images}: images {x.shape} do not match labels {y.shape} in {labels.name}")
    if y.max(initial=0) > 9:
        raise RunError(f"{labels}: label {int(y.max())} out of range 0..9")
    return x[:, None], y.astype(np.int64)  # [N, 1, 28, 28]: one channel, so the CNN uses 2-D convolutions
