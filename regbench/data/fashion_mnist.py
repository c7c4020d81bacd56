"""Fashion-MNIST (Xiao et al., 2017): Zalando's 28x28 clothing images, a drop-in for MNIST with the same four
IDX files (same names, same layout), from the authors' own bucket."""

from __future__ import annotations

from dataclasses import dataclass

from regbench.data.base import RawData
from regbench.data.download import DownloadConfig
from regbench.data.mnist import load_idx_dataset

BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"
FILES = {
    "train-images-idx3-ubyte.gz": "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
    "train-labels-idx1-ubyte.gz": "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
    "t10k-images-idx3-ubyte.gz": "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
    "t10k-labels-idx1-ubyte.gz": "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
}


@dataclass
class FashionMnistConfig(DownloadConfig):
    name: str = "fashion_mnist"


def load(cfg: FashionMnistConfig) -> RawData:
    return load_idx_dataset(cfg, FILES, BASE_URL)
