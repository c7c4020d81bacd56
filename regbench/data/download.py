"""Standard files of public datasets: found in `dataset.root`, in the cache, or downloaded into the cache.

A download goes to a temporary file in the cache folder, is checked against the SHA-256 sum regbench knows for
that file, and only then renamed into place (os.replace): the cache holds verified files or nothing, even if the
process dies mid-download. Files a user puts in `dataset.root` are read as they are.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from regbench.data.base import DatasetConfig
from regbench.errors import RunError
from regbench.paths import cache_home
from regbench.schema import param

_CHUNK = 1 << 20
_TIMEOUT_S = 60


@dataclass
class DownloadConfig(DatasetConfig):
    """Fields of every dataset read from its standard public files."""

    root: str = param("", "folder holding the dataset's files; empty: the cache (see cache_dir)")
    download: bool = param(False, "download missing files into the cache, verified by SHA-256")
    cache_dir: str = param("", "cache folder; empty: $REGBENCH_CACHE or ~/.cache/regbench")
    base_url: str = param("", "where to download from; empty: the dataset's official location")


def cache_root(cfg: DownloadConfig) -> Path:
    return Path(cfg.cache_dir).expanduser() if cfg.cache_dir else cache_home()


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def fetch(url: str, dest: Path, sha256: str) -> None:
    """Download `url` to `dest` if its SHA-256 matches; otherwise raise RunError and leave nothing behind."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            while chunk := response.read(_CHUNK):
                h.update(chunk)
                out.write(chunk)
        if h.hexdigest() != sha256:
            raise RunError(f"{url}: checksum mismatch (sha256 {h.hexdigest()}, expected {sha256}); nothing was cached")
        os.replace(tmp, dest)
    except urllib.error.HTTPError as e:
        raise RunError(f"{url}: download failed ({e}); check dataset.base_url") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise RunError(
            f"{url}: download failed ({reason}); offline? put the files in a folder and set dataset.root"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)


def locate(cfg: DownloadConfig, folder: str, files: dict[str, str], base_url: str) -> Path:
    """The folder holding every one of `files` ({name: sha256}): dataset.root, or the cache, downloading into it
    what is missing when dataset.download=true."""
    if cfg.root:
        root = Path(cfg.root).expanduser()
        missing = [f for f in files if not (root / f).is_file()]
        if missing:
            raise RunError(
                f"dataset.root={cfg.root}: {missing[0]} not found; expected {', '.join(files)} "
                f"(or leave root empty and set dataset.download=true)"
            )
        return root
    cache = cache_root(cfg) / folder
    missing = [f for f in files if not (cache / f).is_file()]
    if missing and not cfg.download:
        raise RunError(
            f"{cfg.name}: {missing[0]} not found in {cache}; set dataset.download=true to fetch it, "
            f"or dataset.root=FOLDER holding {', '.join(files)}"
        )
    url = (cfg.base_url or base_url).rstrip("/")
    for name in missing:
        fetch(f"{url}/{name}", cache / name, files[name])
    return cache
