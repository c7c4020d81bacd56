"""One job, start to end: validate, lock, skip when complete, train (or take the record the launcher trained), save,
clear an old failure and checkpoint, or record the failure; then one status line for the sweep and the command.

A job's folder is results/jobs/<run id> (see regbench.results.store), for a single run and for every job of a
sweep (<sweep dir>/jobs/<run id> when the command names the sweep's folder with hydra.sweep.dir); a sweep's own
folder (results/sweeps/<date>/<time>-<random>) holds Hydra's multirun.yaml and jobs.jsonl, one line per job
naming its folder and what happened to it. A job that raises leaves failure.json in its folder and the sweep goes
on; `regbench run` reads every job's outcome at the end (the file named by REGBENCH_STATUS, appended to by each
job, so process-based launchers report too) and exits non-zero on failures.

Validated once: `validated(cfg)` is the one door to validate_config for a job. It keeps the Spec of each resolved job
config (Hydra's own node left out) it has validated, so within one process the preflight, the resolvers that name
the job's folder, regbench's launcher and the job itself share one validation per job. The launcher also hands the
Spec it pooled a job with to `run`, so a job trained in a population is saved under the same Spec it trained with.

Both the @hydra.main shell (regbench.hydra_app) and the launcher (hydra_plugins/regbench_launcher) import this
module; it imports neither. torch and pandas are imported where a job needs them: `regbench run --cfg job`, --help
and shell completion load this module and print in a fraction of a second without them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from regbench.results import records, store

log = logging.getLogger("regbench")
STATUS_ENV = "REGBENCH_STATUS"
# Specs kept by validated(): a sweep's jobs at most (preflight checks up to 512); each is a few small dataclasses.
MAX_SPECS = 1024
_specs: dict[str, object] = {}


def job_config(root: DictConfig) -> DictConfig:
    """The job's keys only, resolved: resolving the hydra node from inside one of its own interpolations would
    recurse."""
    keys = [k for k in root if k != "hydra"]
    return OmegaConf.create({k: _plain(root[k]) for k in keys})


def _plain(value):
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def validated(cfg: DictConfig):
    """The validated Spec of a job config (with or without Hydra's node), validated once per process."""
    from regbench.config import validate_config

    try:
        key = json.dumps(OmegaConf.to_container(job_config(cfg)), default=str)
    except OmegaConfBaseException:  # an interpolation that points nowhere: validate_config names the key
        return validate_config(cfg)
    if key not in _specs:
        if len(_specs) >= MAX_SPECS:
            _specs.pop(next(iter(_specs)))
        _specs[key] = validate_config(cfg)
    return _specs[key]


def debug() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1" or os.environ.get("REGBENCH_DEBUG") == "1"


def report(out: Path, rid: str, status: str, error: str = "") -> None:
    """The job's outcome: a line in its sweep's jobs.jsonl, and one in the command's status file."""
    entry = {"run_id": rid, "dir": str(out), "status": status, **({"error": error} if error else {})}
    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN:
        sweep = Path(hc.sweep.dir)
        rel = os.path.relpath(out, sweep.resolve())
        line = {"num": hc.job.num, **entry, "dir": rel, "overrides": list(hc.overrides.task)}
        store.append_line(sweep / store.SWEEP_INDEX, line)
    if os.environ.get(STATUS_ENV):
        store.append_line(Path(os.environ[STATUS_ENV]), entry)


def show(result: dict) -> float | None:
    """Print the job's gap table; returns what an optimizing sweeper maximises (mean regularized val accuracy)."""
    from regbench.reporting.frame import members_frame
    from regbench.reporting.summary import render, summarize

    render(summarize(members_frame(result)), title=f"{result['job']['dataset']} / {result['job']['model']}")
    reg = [m["final"]["val_acc"] for m in result["members"] if m["arm"] != "baseline"]
    reg = [v for v in reg if v is not None]
    return sum(reg) / len(reg) if reg else None


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


def complete(out: Path, spec) -> dict | None:
    """The folder's complete record of this very job, when the job resumes (trainer.resume), else None."""
    result = store.read_record(out) if spec.trainer.resume else None
    return result if result is not None and result.get("run_id") == store.run_id(spec) else None


def save(result: dict, spec, out: Path) -> None:
    """A trained job's end: its records saved atomically, sent to the chosen loggers, and an old failure and any
    checkpoint cleared. The caller holds the folder's lock."""
    records.save(result, out)
    if spec.loggers:
        from regbench import loggers

        loggers.write(spec.loggers, result, out)
    store.clear_failure(out)
    for path in store.checkpoints(out):
        path.unlink(missing_ok=True)


def run_experiment(cfg: DictConfig, spec, **kw) -> dict:
    from regbench.experiment import run_experiment as train

    return train(cfg, spec, **kw)


def run(cfg: DictConfig, spec=None, trained: dict | None = None, locked: bool = False) -> float | None:
    """Run the job `cfg` in its Hydra output folder.

    spec: its Spec when the caller validated it; trained: its record when regbench's launcher already trained it
    in a sweep population; locked: the caller holds the job's lock (flock is per open file: locking it again here
    would wait forever)."""
    out = Path(HydraConfig.get().runtime.output_dir)
    rid = out.name
    try:
        spec = spec if spec is not None else validated(cfg)
        rid = store.run_id(spec)
        with contextlib.nullcontext() if locked else store.lock(out):
            result = complete(out, spec)
            status = "skipped" if result is not None else "trained"
            if status == "trained":
                if trained is None:
                    pin_gpu()
                    cap_threads(spec)
                result = trained or run_experiment(cfg, spec, folder=out)
                save(result, spec, out)
    except Exception as err:  # noqa: BLE001 - one job's failure is recorded and the sweep goes on
        store.write_failure(out, err, rid)
        message = f"{type(err).__name__}: {err}".splitlines()[0]
        if debug():
            log.exception("job failed: %s", out)
        else:
            log.error("job failed: %s (traceback in %s)", message, out / store.TRACEBACK)
        report(out, rid, "failed", message)
        return None
    if status == "skipped":
        log.info("skipped, already complete: %s", out)
    else:
        log.info("records: %s", out / records.RESULT)
    report(out, rid, status)
    return show(result)
