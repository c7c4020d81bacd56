"""MNIST (LeCun et al., 1998) from its four standard IDX files, gzip-compressed: 60000 train / 10000 test.

The IDX format: a big-endian header (two zero bytes, a type code, the number of dimensions, then each dimension
as a 32-bit integer) followed by the values. regbench reads unsigned-byte IDX files only, which is what the
MNIST family ships.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from regbench.data.base import RawData
from regbench.data.download import DownloadConfig, locate
from regbench.errors import RunError

# torchvision's mirror: yann.lecun.com, the original home, now often refuses automated downloads.
BASE_URL = "https://ossci-datasets.s3.amazonaws.com/mnist"
FILES = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
_UBYTE = 0x08


@dataclass
class MnistConfig(DownloadConfig):
    name: str = "mnist"


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


def load_idx_dataset(cfg: DownloadConfig, files: dict[str, str], base_url: str) -> RawData:
    folder = locate(cfg, cfg.name, files, base_url)
    x_tr, y_tr = read_idx_pair(folder / "train-images-idx3-ubyte.gz", folder / "train-labels-idx1-ubyte.gz")
    x_te, y_te = read_idx_pair(folder / "t10k-images-idx3-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz")
    return RawData(x_tr, y_tr, x_te, y_te, kind="image", n_classes=10)


def load(cfg: MnistConfig) -> RawData:
    return load_idx_dataset(cfg, FILES, BASE_URL)
