"""The thin @hydra.main shell: skip what is complete, run the core, write the records or the failure, print the table.

A job's folder is results/jobs/<run id> (see regbench.results.store), for a single run and for every job of a
sweep (<sweep dir>/jobs/<run id> when the command names the sweep's folder with hydra.sweep.dir); a sweep's own
folder (results/sweeps/<date>/<time>-<random>) holds Hydra's multirun.yaml and jobs.jsonl, one line per job
naming its folder and what happened to it. A job that raises leaves failure.json in its folder and the sweep goes
on; the `regbench run` command reads every job's outcome at the end (the file named by
REGBENCH_STATUS, appended to by each job, so process-based launchers report too) and exits non-zero on failures.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.regbench_launcher.regbench_launcher import RegbenchLauncher
from regbench import singles
from regbench.paths import config_dir
from regbench.results import records, store

# torch, the engine and pandas are imported where a job needs them: `regbench run --cfg job`, --help and shell
# completion come through this module and print in a fraction of a second without them.

log = logging.getLogger("regbench")
STATUS_ENV = "REGBENCH_STATUS"

# Hydra finds plugins by walking the `hydra_plugins` namespace's paths, which an editable (PEP 660) install does
# not expose; registering regbench's launcher by hand works for every kind of install.
Plugins.instance().register(RegbenchLauncher)


def _job_config(root: DictConfig) -> DictConfig:
    # the job's keys only: resolving the hydra node from inside one of its own interpolations would recurse
    return OmegaConf.create({k: OmegaConf.to_container(root[k], resolve=True) for k in root if k != "hydra"})


def _run_id(*, _root_: DictConfig) -> str:
    from regbench.config import validate_config

    return store.run_id(validate_config(_job_config(_root_)))


def _job_subdir(jobs_root: str, *, _root_: DictConfig) -> str:
    """A sweep job's folder relative to the sweep's: jobs_root/<run id>, shared by every sweep that runs the job;
    when the command names the sweep's folder (hydra.sweep.dir=...), jobs/<run id> inside it, as Hydra keeps a
    sweep's jobs under its folder."""
    rid = _run_id(_root_=_root_)
    given = OmegaConf.select(_root_, "hydra.overrides.hydra", default=None) or []
    if any(str(o).lstrip("+").startswith("hydra.sweep.dir=") for o in given):
        return os.path.join(store.JOBS, rid)
    target = os.path.abspath(os.path.join(jobs_root, rid))
    return os.path.relpath(target, os.path.abspath(str(_root_.hydra.sweep.dir)))


def register_resolvers() -> None:
    """The resolvers configs/config.yaml names in hydra.run.dir and hydra.sweep.dir/subdir."""
    # Cached per config and copied by Hydra into each job of a sweep, so a sweep folder's suffix is drawn once.
    OmegaConf.register_new_resolver("regbench_uid", lambda: secrets.token_hex(3), use_cache=True, replace=True)
    OmegaConf.register_new_resolver("regbench_run_id", _run_id, replace=True)
    OmegaConf.register_new_resolver("regbench_job_subdir", _job_subdir, replace=True)
    singles.register()  # the singles preset's cells, experiment/single/*, made from the regularizers' declarations


register_resolvers()


def debug() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1" or os.environ.get("REGBENCH_DEBUG") == "1"


def _report(out: Path, rid: str, status: str, error: str = "") -> None:
    entry = {"run_id": rid, "dir": str(out), "status": status, **({"error": error} if error else {})}
    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN:
        sweep = Path(hc.sweep.dir)
        rel = os.path.relpath(out, sweep.resolve())
        line = {"num": hc.job.num, **entry, "dir": rel, "overrides": list(hc.overrides.task)}
        store.append_line(sweep / store.SWEEP_INDEX, line)
    if os.environ.get(STATUS_ENV):
        store.append_line(Path(os.environ[STATUS_ENV]), entry)


def _show(result: dict) -> float | None:
    from regbench.report.frame import members_frame
    from regbench.report.summary import render, summarize

    render(summarize(members_frame(result)), title=f"{result['job']['dataset']} / {result['job']['model']}")
    reg = [m["final"]["val_acc"] for m in result["members"] if m["arm"] != "baseline"]
    reg = [v for v in reg if v is not None]
    return sum(reg) / len(reg) if reg else None  # what an optimizing sweeper maximises


def pin_gpu() -> None:
    """Under a multi-process launcher (joblib, submitit), job n takes GPU n mod the visible count: one device per
    process. (regbench's own launcher trains every population in its one process and does not come here.)"""
    import torch

    count = torch.cuda.device_count()
    hc = HydraConfig.get()
    if count > 1 and hc.mode == RunMode.MULTIRUN:
        torch.cuda.set_device(hc.job.num % count)


def cap_threads(spec) -> None:
    """torch's CPU threads for a job run here: trainer.threads when set, else the CPUs a launcher allots each job
    (submitit's cpus_per_task, local or on Slurm), else regbench's default (regbench.sweep.set_threads)."""
    from regbench.sweep import set_threads

    set_threads(spec.trainer, HydraConfig.get().launcher.get("cpus_per_task"))


def run_experiment(cfg: DictConfig, spec, **kw) -> dict:
    from regbench.experiment import run_experiment as run

    return run(cfg, spec, **kw)


def run_job(cfg: DictConfig, trained: dict | None = None, locked: bool = False) -> float | None:
    """One job: `trained` is its record when regbench's launcher already trained it inside a sweep population;
    `locked`: the caller holds the job's lock (flock is per open file: locking it again here would wait forever)."""
    from regbench.config import validate_config

    out = Path(HydraConfig.get().runtime.output_dir)
    rid = out.name
    try:
        spec = validate_config(cfg)
        rid = store.run_id(spec)
        with contextlib.nullcontext() if locked else store.lock(out):
            result = store.read_record(out) if spec.trainer.resume else None
            status = "skipped" if result is not None and result.get("run_id") == rid else "trained"
            if status == "trained":
                if trained is None:
                    pin_gpu()
                    cap_threads(spec)
                result = trained or run_experiment(cfg, spec, folder=out)
                records.save(result, out)
                store.clear_failure(out)
                (out / store.CHECKPOINT).unlink(missing_ok=True)
    except Exception as err:  # noqa: BLE001 - one job's failure is recorded and the sweep goes on
        store.write_failure(out, err, rid)
        message = f"{type(err).__name__}: {err}".splitlines()[0]
        if debug():
            log.exception("job failed: %s", out)
        else:
            log.error("job failed: %s (traceback in %s)", message, out / store.TRACEBACK)
        _report(out, rid, "failed", message)
        return None
    if status == "skipped":
        log.info("skipped, already complete: %s", out)
    else:
        log.info("records: %s", out / records.RESULT)
    _report(out, rid, status)
    return _show(result)


@hydra.main(config_path=config_dir(), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    return run_job(cfg)
