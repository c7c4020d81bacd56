"""regbench's Hydra launcher: a sweep batch's compatible jobs train as one population (regbench.sweep), then
every job goes through Hydra's own run_job (calling regbench.job.run with the record), so each keeps its folder,
its .hydra/ files, its log, its JobReturn and the callbacks, exactly as under the basic launcher. It lives in
`hydra_plugins` because Hydra instantiates launchers from that namespace only."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

from regbench import job
from regbench.errors import RegbenchError
from regbench.results import store

log = logging.getLogger(__name__)


class RegbenchLauncher(Launcher):
    def __init__(self, memory_budget_mb: int = 2048) -> None:
        self.budget_bytes = int(memory_budget_mb) << 20
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from regbench.sweep import Job, train_jobs  # torch: only when a sweep runs

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        log.info("Launching %d jobs as batched populations", len(job_overrides))
        configs, pooled = [], []
        # A pooled job's lock is held from before it trains until its record is written (job.run, which then does
        # not lock it again); a job another process holds is left out, and job.run waits for it and skips it.
        held: dict[int, contextlib.ExitStack] = {}
        for n, overrides in enumerate(job_overrides):
            idx = initial_job_idx + n
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(cfg):
                cfg.hydra.job.id = idx
                cfg.hydra.job.num = idx
                # what run_job will set: the record's config resolves before the job starts
                cfg.hydra.runtime.output_dir = os.path.abspath(
                    os.path.join(cfg.hydra.sweep.dir, cfg.hydra.sweep.subdir)
                )
            configs.append(cfg)
            with contextlib.suppress(RegbenchError):  # such a job runs on its own below, which reports the problem
                spec = job.validated(cfg)
                out = cfg.hydra.runtime.output_dir
                # per-job checkpoints (`regbench run` refuses the option here; a job that comes anyway runs alone)
                if spec.trainer.checkpoint_every is not None or not self._lock(held, n, out):
                    continue
                # a job already complete (resume) goes to job.run untrained, which skips it
                if spec.trainer.resume and store.is_complete(out, store.run_id(spec)):
                    held.pop(n).close()
                else:
                    pooled.append(Job(n, cfg, spec))

        returns: dict[int, JobReturn] = {}

        def finish(n: int, task) -> None:
            returns[n] = run_job(
                hydra_context=self.hydra_context,
                task_function=task,
                config=configs[n],
                job_dir_key="hydra.sweep.dir",
                job_subdir_key="hydra.sweep.subdir",
            )
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)

        try:
            specs = {j.index: j.spec for j in pooled}
            for n, record in train_jobs(pooled, self.budget_bytes, around=self._job_logs):
                try:
                    finish(n, lambda cfg, n=n, record=record: job.run(cfg, specs[n], record, locked=True))
                finally:
                    held.pop(n).close()
        except Exception as err:  # noqa: BLE001 - each remaining job then runs alone and records its own outcome
            log.warning("batched training stopped (%s); the remaining jobs run one by one", err)
        finally:
            for stack in held.values():
                stack.close()
        for n in range(len(configs)):
            if n not in returns:
                finish(n, self.task_function)
        return [returns[n] for n in range(len(configs))]

    @staticmethod
    def _lock(held: dict, n: int, folder: str) -> bool:
        """Take job n's lock without waiting into held[n]; False when another process holds it."""
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(store.lock(Path(folder), wait=False))
        except BlockingIOError:
            return False
        held[n] = stack
        return True

    @contextlib.contextmanager
    def _job_logs(self, jobs):
        """While a population trains, regbench's log lines (progress, resumes) also go to the log file of each job
        with members in it, where run_job then appends the job's own; otherwise they would reach the console only."""
        logger = logging.getLogger("regbench")
        fmt = self.config.hydra.job_logging.get("formatters", {}).get("simple", {})
        formatter = logging.Formatter(fmt.get("format", "[%(asctime)s] %(message)s"), fmt.get("datefmt", "%H:%M:%S"))
        handlers = []
        for pooled in jobs:
            folder = Path(pooled.cfg.hydra.runtime.output_dir)
            folder.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(folder / f"{pooled.cfg.hydra.job.name}.log")
            handler.setFormatter(formatter)
            logger.addHandler(handler)
            handlers.append(handler)
        try:
            yield
        finally:
            for handler in handlers:
                logger.removeHandler(handler)
                handler.close()
