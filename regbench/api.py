"""The Python API: `from regbench import run, report`, for notebooks and scripts.

    record = run("dataset=digits", "regularizers=[l2]", "trainer.epochs=20")
    table = report("results/")                      # the gap table as a pandas DataFrame

`run` takes the command line's overrides and does what `regbench run` does for one job: validate, check the data
and the device before training, skip the job when results/jobs/<run id> already holds its complete record, train,
and save the record atomically. It returns the record (the dict in result.json). Sweeps (`-m`) stay on the command
line, where Hydra's launchers are; a loop over `run` calls is the API's sweep.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from regbench import job, singles
from regbench.paths import config_dir
from regbench.results import store


def compose_config(*overrides: str):
    """The job config `regbench run OVERRIDES` would run (Hydra's own node left out)."""
    from regbench.preflight import compose_job

    singles.register()  # experiment presets may name the singles cells
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir(), version_base="1.3"):
            return job.job_config(compose_job(list(overrides)))
    finally:
        GlobalHydra.instance().clear()


def run(*overrides: str, results: str | Path | None = "results", force: bool = False) -> dict:
    """Train one job and return its record. results: the folder whose jobs/<run id> keeps the record (None: keep
    nothing on disk); force: train again even when a complete record is there."""
    from regbench.experiment import preflight, run_experiment
    from regbench.sweep import set_threads

    cfg = compose_config(*overrides)
    spec = job.validated(cfg)
    preflight(spec)
    set_threads(spec.trainer)
    if results is None:
        return run_experiment(cfg, spec)
    folder = Path(results) / store.JOBS / store.run_id(spec)
    folder.mkdir(parents=True, exist_ok=True)
    with store.lock(folder):
        done = None if force else job.complete(folder, spec)
        if done is not None:
            return done
        record = run_experiment(cfg, spec, folder=folder)
        job.save(record, spec, folder)
    return record


def report(
    *paths: str | Path,
    dataset: Iterable[str] = (),
    model: Iterable[str] = (),
    regularizer: Iterable[str] = (),
    sort: str | None = None,
    descending: bool = False,
):
    """The gap table over every record below `paths` (default: results/), as `regbench report` computes it: a
    pandas DataFrame with the columns of its csv/json output."""
    from regbench.reporting.build import build

    return build(paths or ("results",), tuple(dataset), tuple(model), tuple(regularizer), sort, descending)


__all__ = ["compose_config", "report", "run"]
