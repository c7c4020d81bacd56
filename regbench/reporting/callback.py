"""The table a multirun prints when its last job ends: `regbench report` over the sweep's folder."""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from regbench.errors import RegbenchError


class SweepReport(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from rich.console import Console

        from regbench.reporting import formats
        from regbench.reporting.build import build

        sweep_dir = config.hydra.sweep.dir
        try:
            table = build([sweep_dir])
        except RegbenchError as err:  # a sweep whose every job failed leaves nothing to aggregate
            print(f"regbench: warning: no sweep table: {err}")
            return
        console = Console()
        console.rule(f"sweep: {sweep_dir}")
        formats.rich(table, console)
