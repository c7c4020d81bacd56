"""Shared helpers: compose the real config with tiny settings, run the real CLI in a subprocess or in process, and
check that members trained in a population equal themselves trained alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from regbench.paths import config_dir

# Small enough to train in well under a second, large enough to separate train from validation.
TINY = ["dataset.num_samples=600", "trainer.epochs=2", "trainer.seeds=2", "trainer.progress=off"]

torch.set_num_threads(1)  # tests compare numbers, and 2 CI cores are shared with the subprocess tests


@pytest.fixture(scope="session", autouse=True)
def dataset_cache(tmp_path_factory):
    """The suite's own dataset cache, for it and the CLI subprocesses it starts: the user's is never written, and
    MNIST-1D is generated once a session (data/mnist1d.py)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REGBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        # trainer.batching=auto chooses batched in the suite (and its CLI subprocesses), as it trained before the
        # choice existed: numbers pinned by tests must not depend on how fast the machine was at that moment
        mp.setenv("REGBENCH_BATCHING", "batched")
        yield


@pytest.fixture
def compose_cfg():
    def _compose(*overrides: str):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir(), version_base="1.3"):
            return compose("config", overrides=list(overrides))

    yield _compose
    GlobalHydra.instance().clear()


def run_cli(*args: str, cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "REGBENCH_DEBUG")}
    env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "regbench.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def two_threads():
    """For tests of member independence: the suite runs on one thread, and thread splits are what can break it."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


class Interrupt(Exception):
    pass


class StopAt:
    """A progress display that raises at one epoch: the run dies the way a killed one would, mid-training."""

    def __init__(self, epoch):
        self.epoch = epoch

    def start(self, epochs, members):
        pass

    def update(self, epoch, best):
        if epoch == self.epoch:
            raise Interrupt

    def close(self):
        pass


@pytest.fixture
def invoke(tmp_path, monkeypatch):
    """`regbench run *args` in process, from an empty folder, without the debug switches; asserts that nothing was
    written (a refusal comes before any folder) and returns the click result."""
    from typer.testing import CliRunner

    from regbench.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REGBENCH_DEBUG", raising=False)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)

    def _invoke(*args):
        result = CliRunner().invoke(app, ["run", *args])
        assert not (tmp_path / "results").exists()  # nothing written
        return result

    return _invoke


def assert_trained_alone_equals_together(splits, spec, members, indices, device="cpu", tol=1e-4):
    """Train `members` as one population, then each of `indices` alone: the same final metrics within `tol`.
    Returns the population's result."""
    from regbench.train.engine import train_population

    together = train_population(splits, spec.model, spec.trainer, members, device)
    for j in indices:
        alone = train_population(splits, spec.model, spec.trainer, [members[j]], device)
        torch.testing.assert_close(alone.final[0], together.final[j], rtol=tol, atol=tol)
    return together
