"""A job's lifecycle (regbench.job): the module layout around it, and what it does once per process."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from hydra.core.global_hydra import GlobalHydra
from typer.testing import CliRunner

from regbench.cli import app

from .conftest import TINY


@pytest.fixture
def in_process(tmp_path, monkeypatch):
    """`regbench run` in this process, in tmp_path; Hydra's logging and global state are put back afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # `regbench run` hands its arguments to Hydra through argv
    monkeypatch.delenv("REGBENCH_DEBUG", raising=False)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield lambda *args: CliRunner().invoke(app, ["run", *args])
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    GlobalHydra.instance().clear()


def test_the_launcher_and_the_job_import_no_hydra_shell():
    # hydra_app imports the launcher to register it: the launcher importing hydra_app back would be a circle
    code = (
        "import sys; import hydra_plugins.regbench_launcher.regbench_launcher, regbench.job; "
        "print('regbench.hydra_app' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_each_job_of_a_sweep_is_validated_once(tmp_path, monkeypatch, in_process):
    from regbench import config, job

    monkeypatch.setattr(job, "_specs", {})  # nothing validated earlier in this process
    calls = []
    real = config._validate_config

    def counting(cfg):
        calls.append(cfg.trainer.seed)
        return real(cfg)

    monkeypatch.setattr(config, "_validate_config", counting)
    r = in_process("-m", "trainer.seed=3,4", *TINY, "trainer.seeds=1", "regularizers=[]")
    assert r.exit_code == 0, r.output
    assert len(list(tmp_path.glob("results/jobs/*/result.json"))) == 2
    # the preflight, the folder's name, the launcher and the job share one validation per job
    assert sorted(calls) == [3, 4]


@pytest.fixture
def counted_loads(monkeypatch):
    """The datasets' loaders, counting their calls (by dataset name)."""
    from regbench import data

    calls = []
    for name, entry in list(data.DATASETS.items()):

        def load(cfg, entry=entry, name=name):
            calls.append(name)
            return entry.load(cfg)

        monkeypatch.setitem(data.DATASETS, name, entry._replace(load=load))
    return calls


def test_the_dataset_the_preflight_loaded_is_not_loaded_again_to_train(compose_cfg, counted_loads):
    from regbench.config import validate_config
    from regbench.experiment import preflight, run_experiment

    cfg = compose_cfg(*TINY, "trainer.seeds=1", "trainer.epochs=1")
    spec = validate_config(cfg)
    preflight(spec)
    run_experiment(cfg, spec)
    assert counted_loads == ["mnist1d"]


def test_the_loaded_datasets_kept_are_few_and_a_changed_file_is_read_again(compose_cfg, counted_loads, tmp_path):
    from regbench import data
    from regbench.config import validate_config

    def load(*overrides):
        return data.load(validate_config(compose_cfg(*overrides)).dataset)

    for n in (100, 200, 300):
        load("dataset=moons", f"dataset.num_samples={n}")
    assert len(data._kept) == data.KEPT == 2
    load("dataset=moons", "dataset.num_samples=300")
    assert counted_loads == ["moons"] * 3
    path = tmp_path / "d.csv"
    path.write_text("a,label\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    assert sum(load("dataset=csv", f"dataset.path={path}").sizes().values()) == 20
    path.write_text("a,label\n" + "".join(f"{i},{i % 2}\n" for i in range(40)))
    assert sum(load("dataset=csv", f"dataset.path={path}").sizes().values()) == 40
    assert counted_loads == ["moons"] * 3 + ["csv"] * 2
