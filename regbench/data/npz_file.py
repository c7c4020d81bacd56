"""The user's own NumPy .npz file with arrays `x` (inputs) and `y` (class indices 0, 1, ...).

The kind follows x's shape unless `dataset.kind` says otherwise: [N, F] a table, [N, H, W] a one-channel image,
[N, C, H, W] an image. [N, L] is also how a sequence is stored: say `dataset.kind=sequence` to get 1-D
convolutions from the CNN. Loaded with allow_pickle=False: an .npz holding Python objects is refused.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass

import numpy as np

from regbench.data.base import RawData
from regbench.data.files import FileConfig, class_indices, existing, finish, finite_float32
from regbench.errors import RunError
from regbench.schema import param

NDIMS = {"table": (2,), "sequence": (2,), "image": (3, 4)}


@dataclass
class NpzConfig(FileConfig):
    name: str = "npz"
    kind: str = param("auto", "the data's kind; auto: from x's shape", choices=["auto", "table", "sequence", "image"])


def read(path: str, kind: str) -> tuple[np.ndarray, np.ndarray, str]:
    p = existing(path)
    if not zipfile.is_zipfile(p):  # np.load would try it as a pickle and say "pickled data"
        raise RunError(f"{path}: not an .npz file (not a zip archive); write one with numpy.savez(path, x=..., y=...)")
    try:
        with np.load(p, allow_pickle=False) as f:
            missing = [k for k in ("x", "y") if k not in f.files]
            if missing:
                raise RunError(f"{path}: no array {missing[0]!r}; found: {', '.join(f.files) or 'none'}")
            x, y = f["x"], f["y"]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise RunError(f"{path}: not a readable .npz file ({str(e).splitlines()[0]})") from None
    if x.ndim not in (2, 3, 4):
        raise RunError(f"{path}: x has shape {x.shape}; expected [N, F], [N, L], [N, H, W] or [N, C, H, W]")
    if x.dtype.kind not in "iufb":
        raise RunError(f"{path}: x must be numeric, got dtype {x.dtype}")
    if y.ndim != 1:
        raise RunError(f"{path}: y must be a 1-D array of class indices, got shape {y.shape}")
    if len(x) != len(y):
        raise RunError(f"{path}: x has {len(x)} examples but y has {len(y)}")
    if len(x) == 0:
        raise RunError(f"{path}: no examples (x has shape {x.shape})")
    if x.size == 0:
        raise RunError(f"{path}: x has shape {x.shape}; no input values per example")
    if kind == "auto":
        kind = "table" if x.ndim == 2 else "image"
    if x.ndim not in NDIMS[kind]:
        want = " or ".join({2: "[N, F]", 3: "[N, H, W]", 4: "[N, C, H, W]"}[d] for d in NDIMS[kind])
        raise RunError(f"{path}: x has shape {x.shape}; {kind} data must be {want}")
    if x.dtype != np.uint8:
        x = finite_float32(x, path, lambda i: f"x[{', '.join(map(str, np.unravel_index(i, x.shape)))}]")
    if x.ndim == 3:
        x = x[:, None]  # one channel
    return x, class_indices(y, path), kind


def load(cfg: NpzConfig) -> RawData:
    x, y, kind = read(cfg.path, cfg.kind)
    test = None
    if cfg.test_path:
        x_te, y_te, _ = read(cfg.test_path, kind)
        if x_te.shape[1:] != x.shape[1:]:
            raise RunError(f"{cfg.test_path}: examples of shape {x_te.shape[1:]}, but {cfg.path} has {x.shape[1:]}")
        test = (x_te, y_te)
    return finish(cfg, (x, y), test, kind, cfg.path)
