"""Where the packaged configs are: inside the installed package, or configs/ in a source tree."""

from __future__ import annotations

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
