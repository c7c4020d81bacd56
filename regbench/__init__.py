"""regbench: which regularizers actually close the train/validation gap, measured against a paired baseline."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("regbench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
