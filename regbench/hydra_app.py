"""The thin @hydra.main shell: validate, run the core, write the records, print the table."""

from __future__ import annotations

import logging
import os
import secrets
import sys
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.regbench_launcher.regbench_launcher import RegbenchLauncher
from regbench.config import validate_config
from regbench.errors import RegbenchError
from regbench.experiment import run_experiment
from regbench.paths import config_dir
from regbench.report.frame import members_frame
from regbench.report.summary import render, summarize
from regbench.results import records

log = logging.getLogger("regbench")

# Hydra finds plugins by walking the `hydra_plugins` namespace's paths, which an editable (PEP 660) install does
# not expose; registering regbench's launcher by hand works for every kind of install.
Plugins.instance().register(RegbenchLauncher)

# Cached per config and copied by Hydra into each job of a sweep, so a run folder's suffix is drawn once.
OmegaConf.register_new_resolver("regbench_uid", lambda: secrets.token_hex(3), use_cache=True, replace=True)


def fail(err: RegbenchError):
    """One line, no traceback (unless HYDRA_FULL_ERROR=1 or REGBENCH_DEBUG=1), and the error's exit code."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1" or os.environ.get("REGBENCH_DEBUG") == "1":
        raise err
    print(f"regbench: error: {err}", file=sys.stderr)
    sys.exit(err.exit_code)


def pin_gpu() -> None:
    """Under a multi-process launcher (joblib, submitit), job n takes GPU n mod the visible count: one device per
    process. (regbench's own launcher trains every population in its one process and does not come here.)"""
    count = torch.cuda.device_count()
    hc = HydraConfig.get()
    if count > 1 and hc.mode == RunMode.MULTIRUN:
        torch.cuda.set_device(hc.job.num % count)


def run_job(cfg: DictConfig) -> float | None:
    pin_gpu()
    try:
        spec = validate_config(cfg)
        result = run_experiment(cfg, spec)
    except RegbenchError as err:
        fail(err)
    return finish_job(result)


def finish_job(result: dict) -> float | None:
    """Write a job's records into its Hydra folder and print its table (also for jobs trained in a batch)."""
    out = Path(HydraConfig.get().runtime.output_dir)
    path = records.save(result, out)
    render(summarize(members_frame(result)), title=f"{result['job']['dataset']} / {result['job']['model']}")
    log.info("records: %s", path)
    reg = [m["final"]["val_acc"] for m in result["members"] if m["arm"] != "baseline"]
    return sum(reg) / len(reg) if reg else None  # what an optimizing sweeper maximises


@hydra.main(config_path=config_dir(), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    return run_job(cfg)
