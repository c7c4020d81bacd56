"""The thin @hydra.main shell: the resolvers configs/config.yaml names, regbench's launcher registered, and the
entry point that hands each job to regbench.job."""

from __future__ import annotations

import os
import secrets

import hydra
from hydra.core.plugins import Plugins
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.regbench_launcher.regbench_launcher import RegbenchLauncher
from regbench import job, singles
from regbench.paths import config_dir
from regbench.results import store

# Hydra finds plugins by walking the `hydra_plugins` namespace's paths, which an editable (PEP 660) install does
# not expose; registering regbench's launcher by hand works for every kind of install.
Plugins.instance().register(RegbenchLauncher)


def _run_id(*, _root_: DictConfig) -> str:
    return store.run_id(job.validated(_root_))


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


@hydra.main(config_path=config_dir(), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    return job.run(cfg)
