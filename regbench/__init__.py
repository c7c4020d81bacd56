"""regbench: which regularizers actually close the train/validation gap, measured against a paired baseline.

from regbench import run, report     # the Python API (regbench/api.py)
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("regbench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"


def __getattr__(name: str):
    # Imported on first use: `regbench --help` and the report commands start without Hydra's compose API or torch.
    if name in ("run", "report"):
        from regbench import api

        return getattr(api, name)
    raise AttributeError(f"module 'regbench' has no attribute {name!r}")
