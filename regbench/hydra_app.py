"""The thin @hydra.main shell: validate, run the core, write the records, print the table."""

from __future__ import annotations

import logging
import os
import secrets
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from regbench.config import validate_config
from regbench.errors import RegbenchError
from regbench.experiment import run_experiment
from regbench.paths import config_dir
from regbench.report.frame import members_frame
from regbench.report.summary import render, summarize
from regbench.results import records

log = logging.getLogger("regbench")

# Cached per config and copied by Hydra into each job of a sweep, so a run folder's suffix is drawn once.
OmegaConf.register_new_resolver("regbench_uid", lambda: secrets.token_hex(3), use_cache=True, replace=True)


def fail(err: RegbenchError):
    """One line, no traceback (unless HYDRA_FULL_ERROR=1 or REGBENCH_DEBUG=1), and the error's exit code."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1" or os.environ.get("REGBENCH_DEBUG") == "1":
        raise err
    print(f"regbench: error: {err}", file=sys.stderr)
    sys.exit(err.exit_code)


def run_job(cfg: DictConfig) -> float | None:
    try:
        spec = validate_config(cfg)
        result = run_experiment(cfg, spec)
    except RegbenchError as err:
        fail(err)
    out = Path(HydraConfig.get().runtime.output_dir)
    path = records.save(result, out)
    render(summarize(members_frame(result)), title=f"{result['job']['dataset']} / {result['job']['model']}")
    log.info("records: %s", path)
    reg = [m["final"]["val_acc"] for m in result["members"] if m["arm"] != "baseline"]
    return sum(reg) / len(reg) if reg else None  # what an optimizing sweeper maximises


@hydra.main(config_path=config_dir(), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    return run_job(cfg)
