"""MNIST (LeCun et al., 1998) from its four standard IDX files, gzip-compressed: 60000 train / 10000 test
(the reader: data/idx.py)."""

from __future__ import annotations

from dataclasses import dataclass

from regbench.data.base import RawData
from regbench.data.download import DownloadConfig, locate
from regbench.data.idx import read_idx_pair

# torchvision's mirror: yann.lecun.com, the original home, now often refuses automated downloads.
BASE_URL = "https://ossci-datasets.s3.amazonaws.com/mnist"
FILES = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}


@dataclass
class MnistConfig(DownloadConfig):
    name: str = "mnist"


def load_idx_dataset(cfg: DownloadConfig, files: dict[str, str], base_url: str) -> RawData:
    folder = locate(cfg, cfg.name, files, base_url)
    x_tr, y_tr = read_idx_pair(folder / "train-images-idx3-ubyte.gz", folder / "train-labels-idx1-ubyte.gz")
    x_te, y_te = read_idx_pair(folder / "t10k-images-idx3-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz")
    return RawData(x_tr, y_tr, x_te, y_te, kind="image", n_classes=10)


def load(cfg: MnistConfig) -> RawData:
    return load_idx_dataset(cfg, FILES, BASE_URL)
