"""Where the packaged configs are (inside the installed package, or configs/ in a source tree), and the cache."""

from __future__ import annotations

import os
from pathlib import Path


def config_dir() -> str:
    try:
        from importlib.resources import files

        path = Path(str(files("regbench.configs")))
        if (path / "config.yaml").is_file():
            return str(path)
    except (ModuleNotFoundError, TypeError):
        pass
    return str(Path(__file__).resolve().parent.parent / "configs")


def cache_home() -> Path:
    """regbench's cache of datasets (downloaded files, generated MNIST-1D): $REGBENCH_CACHE or ~/.cache/regbench."""
    return Path(os.environ.get("REGBENCH_CACHE") or "~/.cache/regbench").expanduser()
