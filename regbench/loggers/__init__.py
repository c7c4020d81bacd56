"""Loggers: a finished job's curves and final metrics, every member's, sent where users already look.

`logger=[tensorboard]`, `logger=[mlflow]` or both (a multi-select group, as regularizers): after a job's record is
saved, each chosen logger writes it (the history is the record's: eval-mode metrics on the full splits, one point
per evaluation, so the curves are the report's). A logger never changes the numbers, the run id or the report's
pairing, and one that fails (a tracking server down) warns and leaves the job's record as it is.
Each is an optional extra: pip install 'regbench[tensorboard]', 'regbench[mlflow]', or both: 'regbench[loggers]'
(the dev extra includes both).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import NamedTuple

from regbench.errors import UsageError, unknown_name
from regbench.loggers.mlflow import MlflowConfig, log_mlflow
from regbench.loggers.tensorboard import TensorBoardConfig, log_tensorboard

log = logging.getLogger("regbench")


class LoggerEntry(NamedTuple):
    schema: type
    write: object  # (cfg, record, folder) -> where it wrote
    package: str  # the module it needs
    summary: str


LOGGERS: dict[str, LoggerEntry] = {
    "tensorboard": LoggerEntry(
        TensorBoardConfig, log_tensorboard, "tensorboard", "TensorBoard event files, one run per member"
    ),
    "mlflow": LoggerEntry(MlflowConfig, log_mlflow, "mlflow", "an MLflow run per job, a nested run per member"),
}


def get(name: str) -> LoggerEntry:
    if name not in LOGGERS:
        raise unknown_name("logger", name, LOGGERS)
    return LOGGERS[name]


def check(loggers: dict) -> None:
    """Before any job starts: every chosen logger's package is installed."""
    for name in loggers:
        entry = get(name)
        if importlib.util.find_spec(entry.package) is None:
            raise UsageError(
                f"logger={name}: needs the {entry.package} package; install it with: pip install 'regbench[{name}]'"
            )


def write(loggers: dict, record: dict, folder: Path) -> None:
    """Send the job's saved record to each chosen logger; a failure is a warning, never the job's failure."""
    for name, cfg in loggers.items():
        try:
            where = get(name).write(cfg, record, Path(folder))
            log.info("logger %s: %s", name, where)
        except Exception as err:  # noqa: BLE001 - the record is safe on disk; the logger is a copy
            log.warning(
                "logger %s failed: %s: %s", name, type(err).__name__, str(err).splitlines()[0] if str(err) else ""
            )


__all__ = ["LOGGERS", "check", "get", "write"]
