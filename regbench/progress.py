"""Progress while a population trains: a live rich bar on a terminal, plain log lines otherwise (CI, pipes)."""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger("regbench")


def choose(mode: str, label: str):
    if mode == "off":
        return None
    interactive = sys.stderr.isatty() and not os.environ.get("CI")
    if mode == "bar" or (mode == "auto" and interactive):
        return BarProgress(label)
    return LogProgress(label)


class LogProgress:
    """About ten lines per run, so logs of long sweeps stay readable."""

    def __init__(self, label: str):
        self.label = label

    def start(self, epochs: int, members: int) -> None:
        self.epochs, self.best = epochs, 0.0
        self.every = max(1, epochs // 10)
        log.info("%s: training %d members for %d epochs", self.label, members, epochs)

    def update(self, epoch: int, best_val: float) -> None:
        self.best = max(self.best, best_val)
        if epoch % self.every == 0 or epoch == self.epochs:
            log.info(
                "%s: epoch %d/%d, best validation accuracy so far %.3f",
                self.label,
                epoch,
                self.epochs,
                self.best,
            )

    def close(self) -> None:
        pass


class BarProgress:
    def __init__(self, label: str):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.label = label
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("best val acc {task.fields[best]:.3f}"),
            TimeRemainingColumn(),
            transient=True,
        )

    def start(self, epochs: int, members: int) -> None:
        self.best = 0.0
        self.bar.start()
        self.task = self.bar.add_task(f"{self.label}: {members} members, epoch", total=epochs, best=0.0)

    def update(self, epoch: int, best_val: float) -> None:
        self.best = max(self.best, best_val)
        self.bar.update(self.task, completed=epoch, best=self.best)

    def close(self) -> None:
        self.bar.stop()
