"""Sweeps: presets expand to the right jobs, and the batched launcher's records equal each job run alone."""

from __future__ import annotations

import json
import os
import re

import pytest
import torch

from regbench import preflight, regularizers, sweep
from regbench.config import validate_config
from regbench.errors import UsageError
from regbench.experiment import run_experiment
from regbench.results import store
from regbench.train import batching

from .conftest import TINY, run_cli

# singles.yaml leaves stochastic depth's cells out: they need residual blocks (model=resnet)
STOCHASTIC_DEPTH = regularizers.get("stochastic_depth").singles


def test_batched_sweep_records_equal_each_job_run_alone(tmp_path, compose_cfg):
    r = run_cli("run", "-m", "regularizers=[l1],[dropout]", *TINY, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "as batched populations" in r.stdout + r.stderr  # Hydra instantiated regbench's launcher, the default
    for job in ("l1", "dropout"):
        found = tmp_path.glob("results/jobs/*/result.json")
        (path,) = [p for p in found if json.loads(p.read_text())["members"][-1]["arm"] == job]
        assert (path.parent / ".hydra" / "overrides.yaml").is_file() and (path.parent / "history.csv").is_file()
        batched = json.loads(path.read_text())
        alone = run_experiment(compose_cfg(f"regularizers=[{job}]", *TINY))
        assert [(m["arm"], m["seed"]) for m in batched["members"]] == [(m["arm"], m["seed"]) for m in alone["members"]]
        for b, a in zip(batched["members"], alone["members"]):
            assert b["final"] == pytest.approx(a["final"], rel=1e-4, abs=1e-4)
            assert (b["epochs"], b["steps"], b["frozen_at_epoch"]) == (a["epochs"], a["steps"], a["frozen_at_epoch"])
        assert batched["provenance"]["config"] == alone["provenance"]["config"]
        assert len(path.parent.joinpath("history.csv").read_text().splitlines()) == 1 + len(alone["history"])


def test_each_jobs_log_holds_the_training_lines_of_its_population(tmp_path):
    tiny = [o for o in TINY if not o.startswith("trainer.progress")]
    r = run_cli("run", "-m", "regularizers=[l1],[dropout]", *tiny, "trainer.progress=log", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    logs = sorted(tmp_path.glob("results/jobs/*/regbench.log"))
    assert len(logs) == 2
    for path in logs:
        text = path.read_text()
        assert "sweep group 1/1 (2 jobs), members 1-6: training 6 members for 2 epochs" in text  # the population's
        assert "records: " in text  # and the job's own line, appended after


def test_a_populations_log_lines_go_to_the_jobs_with_members_in_it_only(compose_cfg):
    import contextlib

    seen = []

    @contextlib.contextmanager
    def around(jobs):
        seen.append(sorted(job.index for job in jobs))
        yield

    jobs = _jobs(compose_cfg, ["regularizers=[l1]"], ["regularizers=[l2]"], ["regularizers=[l2]", "trainer.lr=0.001"])
    per_member = sweep.member_bytes(jobs[0].spec, sweep.data.load(jobs[0].spec.dataset))
    dict(sweep.train_jobs(jobs, budget_bytes=2 * per_member, around=around))
    # jobs 0 and 1: the shared baselines, then l1's members (job 0's), then l2's (job 1's); job 2 on its own
    assert seen == [[0, 1], [0], [1], [2], [2]]


def _jobs(compose_cfg, *variants):
    out = []
    for i, v in enumerate(variants):
        cfg = compose_cfg(*TINY, *v)
        out.append(sweep.Job(i, cfg, validate_config(cfg)))
    return out


def test_jobs_share_baselines_and_split_by_memory_budget(compose_cfg, monkeypatch):
    trained = []
    real = batching.train_population

    def spy(splits, model_cfg, trainer, members, device, bar=None, ckpt=None):
        trained.append([(m.arm, m.seed) for m in members])
        return real(splits, model_cfg, trainer, members, device, bar, ckpt)

    monkeypatch.setattr(batching, "train_population", spy)  # where both cores train a population (or a chunk)
    jobs = _jobs(compose_cfg, ["regularizers=[l1]"], ["regularizers=[l2]"], ["regularizers=[l2]", "trainer.lr=0.001"])
    per_member = sweep.member_bytes(jobs[0].spec, sweep.data.load(jobs[0].spec.dataset))
    records = dict(sweep.train_jobs(jobs, budget_bytes=3 * per_member))
    # jobs 0 and 1 share a schedule: 2 baselines + 2 l1 + 2 l2 in populations of at most 3; job 2 apart, split too
    assert [len(t) for t in trained] == [3, 3, 3, 1]
    assert sorted(m for t in trained[:2] for m in t) == sorted(
        [("baseline", 0), ("baseline", 1), ("l1", 0), ("l1", 1), ("l2", 0), ("l2", 1)]
    )
    alone = run_experiment(jobs[1].cfg, jobs[1].spec)
    for b, a in zip(records[1]["members"], alone["members"]):
        assert b["final"] == pytest.approx(a["final"], rel=1e-4, abs=1e-4)
    base0 = [m["final"] for m in records[0]["members"] if m["arm"] == "baseline"]
    assert base0 == [m["final"] for m in records[1]["members"] if m["arm"] == "baseline"]  # one shared baseline


def test_batch_norm_members_train_in_a_population_of_their_own(compose_cfg, monkeypatch):
    """Batch norm in one member would put every member of its population on the autograd path."""
    trained = []
    real = batching.train_population

    def spy(splits, model_cfg, trainer, members, device, bar=None, ckpt=None):
        trained.append(sorted({m.arm for m in members}))
        return real(splits, model_cfg, trainer, members, device, bar, ckpt)

    monkeypatch.setattr(batching, "train_population", spy)  # where both cores train a population (or a chunk)
    jobs = _jobs(compose_cfg, ["regularizers=[batch_norm]"], ["regularizers=[l2]"], ["regularizers=[dropout]"])
    records = dict(sweep.train_jobs(jobs, budget_bytes=1 << 30))
    assert trained == [["baseline", "dropout", "l2"], ["batch_norm"]]
    for i, job in enumerate(jobs):  # each job still gets its own members' numbers, baseline first
        alone = run_experiment(job.cfg, job.spec)
        assert [(m["arm"], m["seed"]) for m in records[i]["members"]] == [
            (m["arm"], m["seed"]) for m in alone["members"]
        ]
        for b, a in zip(records[i]["members"], alone["members"]):
            assert b["final"] == pytest.approx(a["final"], rel=1e-4, abs=1e-4)


def test_population_result_select_renumbers_a_jobs_members(compose_cfg):
    (job,) = _jobs(compose_cfg, ["regularizers=[l1]"])
    pop = batching.train_population(
        sweep.data.load(job.spec.dataset), job.spec.model, job.spec.trainer, sweep.members_for(job.spec), "cpu"
    )
    part = pop.select([3, 0])
    assert [(m.arm, m.seed) for m in part.members] == [("l1", 1), ("baseline", 0)]
    torch.testing.assert_close(part.final, pop.final[[3, 0]])
    assert {r["member"] for r in part.history} == {0, 1}
    assert [r["train_acc"] for r in part.history if r["member"] == 0] == [
        r["train_acc"] for r in pop.history if r["member"] == 3
    ]


@pytest.mark.parametrize(
    "preset,jobs",
    [("singles", len(regularizers.singles_cells()) - len(STOCHASTIC_DEPTH)), ("ablation", 7), ("strengths", 5)],
)
def test_presets_expand_and_every_job_is_validated(preset, jobs):
    assert preflight.check(["-m", f"experiment={preset}"]) == jobs


def test_singles_on_table_data_names_the_cells_to_leave_out_and_the_exclusion_works():
    """cutout needs a spatial axis: on a table its cells are refused with the override that leaves them out, which
    keeps stochastic depth's (needing residual blocks) out as singles.yaml does."""
    hint = "'+experiment/single=glob(*,exclude=[stochastic_depth*,cutout*])'"
    with pytest.raises(UsageError, match=r"^regularizers.cutout: .*" + re.escape(hint) + "$"):
        preflight.check(["-m", "experiment=singles", "dataset=moons"])
    cutout = len(regularizers.get("cutout").singles)
    kept = preflight.check(["-m", "experiment=singles", "dataset=moons", hint.strip("'")])
    assert kept == len(regularizers.singles_cells()) - cutout - len(STOCHASTIC_DEPTH)


def test_singles_with_every_cell_names_every_refused_regularizer_in_one_hint():
    """glob(*) on a table and the MLP: cutout's and stochastic depth's cells are both refused; one hint for both."""
    with pytest.raises(UsageError, match=r"exclude=\[cutout\*,stochastic_depth\*\]\)'$"):
        preflight.check(["-m", "experiment=singles", "dataset=moons", "+experiment/single=glob(*)"])


def test_the_singles_refusal_on_table_data_is_one_line_and_exit_code_2(tmp_path):
    r = run_cli("run", "-m", "experiment=singles", "dataset=moons", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        "regbench: error: regularizers.cutout: needs sequence or image data, got table data; leave its cells out of "
        "the sweep with '+experiment/single=glob(*,exclude=[stochastic_depth*,cutout*])'"
    ]
    assert not (tmp_path / "results").exists()


def test_the_singles_preset_covers_every_regularizer():
    cells = regularizers.singles_cells()
    for name, cls in regularizers.REGULARIZERS.items():
        assert len([c for c, (reg, _) in cells.items() if reg == name]) == len(cls.singles) >= 1, name


def test_a_preset_job_with_a_bad_value_is_refused_before_anything_runs():
    with pytest.raises(UsageError, match=r"^trainer.lr=0.0: must be in \(0.0, 10.0\]$"):
        preflight.check(["-m", "experiment=singles", "trainer.lr=0.0"])
    with pytest.raises(
        UsageError, match=r"^experiment: unknown name 'nope'; known: ablation, singles, strengths, tuned$"
    ):
        preflight.check(["-m", "experiment=nope"])


def test_each_process_of_a_multi_process_sweep_takes_its_own_gpu(monkeypatch):
    from types import SimpleNamespace

    from hydra.types import RunMode

    from regbench import job

    chosen = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    for mode, num in [(RunMode.MULTIRUN, 6), (RunMode.RUN, 6)]:
        hc = SimpleNamespace(mode=mode, job=SimpleNamespace(num=num))
        monkeypatch.setattr(job.HydraConfig, "get", staticmethod(lambda hc=hc: hc))
        job.pin_gpu()
    assert chosen == [2]  # job 6 of a sweep on 4 GPUs; a single run keeps the default device


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["processes", "local"])
def test_joblib_and_submitit_local_launchers_run_a_sweep(tmp_path, launcher):
    r = run_cli("run", "-m", f"hydra/launcher={launcher}", "regularizers=[l1],[dropout]", *TINY, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    found = sorted(tmp_path.glob("results/jobs/*/result.json"))
    assert {json.loads(p.read_text())["members"][-1]["arm"] for p in found} == {"l1", "dropout"}
    if launcher == "local":  # configs/hydra/launcher/local.yaml allots cpus_per_task: 1 to each job
        assert {json.loads(p.read_text())["provenance"]["cpu_threads"] for p in found} == {1}


BATCH_FAILS = """
from regbench import job, sweep
def broken(*a, **kw):
    raise RuntimeError("population failed")
sweep.train_members = broken
real = job.run_experiment
def flaky(cfg, spec, **kw):
    if spec.trainer.seed == 1:
        raise RuntimeError("injected fault")
    return real(cfg, spec, **kw)
job.run_experiment = flaky
from regbench.cli import app
app()
"""


def test_when_a_batch_fails_its_jobs_run_one_by_one_and_each_records_its_outcome(tmp_path):
    import subprocess
    import sys

    args = ["run", "-m", "trainer.seed=0,1", *TINY, "trainer.seeds=1", "regularizers=[]"]
    env = {"CI": "true", "PATH": "/usr/bin:/bin", **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}
    r = subprocess.run(
        [sys.executable, "-c", BATCH_FAILS, *args], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert r.returncode == 1
    assert "batched training stopped (population failed)" in r.stdout + r.stderr
    assert r.stderr.strip().splitlines()[-2] == "regbench: 2 jobs: 1 trained, 1 failed"
    assert len(list(tmp_path.glob("results/jobs/*/result.json"))) == 1
    assert len(list(tmp_path.glob("results/jobs/*/failure.json"))) == 1


def test_trainer_threads_wins_over_the_launchers_cpus_and_defaults_to_one(monkeypatch, compose_cfg):
    from types import SimpleNamespace

    from regbench import job

    calls = []
    monkeypatch.setattr(sweep.torch, "set_num_threads", calls.append)
    for launcher, threads in [({"cpus_per_task": 4}, None), ({"cpus_per_task": 4}, 2), ({}, None), ({}, 3)]:
        hc = SimpleNamespace(launcher=launcher)
        monkeypatch.setattr(job.HydraConfig, "get", staticmethod(lambda hc=hc: hc))
        job.cap_threads(validate_config(compose_cfg(*TINY, f"trainer.threads={threads or 'null'}")))
    assert calls == [4, 2, 1, 3]


def test_a_batched_sweep_trains_on_trainer_threads_and_records_it(compose_cfg):
    jobs = [sweep.Job(0, compose_cfg(*TINY, "trainer.threads=2"), None)]
    jobs[0].spec = validate_config(jobs[0].cfg)
    before = torch.get_num_threads()
    try:
        ((_, record),) = sweep.train_jobs(jobs, budget_bytes=1 << 30)
    finally:
        torch.set_num_threads(before)
    assert record["provenance"]["cpu_threads"] == 2


def test_the_thread_count_changes_no_number_so_it_stays_out_of_the_run_id(compose_cfg):
    results, ids = [], set()
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            cfg = compose_cfg(*TINY, "regularizers=[l2,dropout]", f"trainer.threads={threads}")
            spec = validate_config(cfg)
            ids.add(store.run_id(spec))
            sweep.set_threads(spec.trainer)
            results.append(run_experiment(cfg, spec))
    finally:
        torch.set_num_threads(before)
    assert len(ids) == 1
    assert [m["final"] for m in results[0]["members"]] == [m["final"] for m in results[1]["members"]]
    assert results[0]["history"] == results[1]["history"]


def test_a_sweep_given_its_folder_keeps_its_jobs_there(tmp_path):
    r = run_cli("run", "-m", "trainer.seed=0,1", *TINY, "trainer.seeds=1", "hydra.sweep.dir=mine", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(list(tmp_path.glob("mine/jobs/*/result.json"))) == 2
    assert not (tmp_path / "results").exists()
    index = [json.loads(line) for line in (tmp_path / "mine" / "jobs.jsonl").read_text().splitlines()]
    assert sorted(e["dir"].split("/")[0] for e in index) == ["jobs", "jobs"]


def test_a_sweep_expands_in_the_basic_sweepers_order():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parse = OverridesParser.create().parse_overrides
    # a key keeps the place it first appeared at, with the values given last; the last key varies fastest
    jobs = preflight.sweep_jobs(parse(["a=1,2", "b=x", "c=range(2)", "a=5,6"]))
    assert jobs == [["a=5", "b=x", "c=0"], ["a=5", "b=x", "c=1"], ["a=6", "b=x", "c=0"], ["a=6", "b=x", "c=1"]]
    with pytest.raises(UsageError, match=r"^a=interval\(0,1\): an interval sweeps nothing"):
        preflight.sweep_jobs(parse(["a=interval(0,1)"]))


@pytest.mark.slow  # composes and validates every singles cell on a ResNet: ~12 s
def test_singles_on_resnet_take_stochastic_depth_cells():
    """The ResNet has residual blocks but no dropout layers, and with norm=batch no batch norm to switch."""
    every = ["-m", "experiment=singles", "dataset=digits", "model=resnet", "+experiment/single=glob(*)"]
    with pytest.raises(UsageError, match=r"exclude=\[batch_norm\*,dropout\*\]\)'$"):
        preflight.check(every)
    jobs = preflight.check([*every, "model.norm=none", "+experiment/single=glob(*,exclude=dropout*)"])
    assert jobs == len(regularizers.singles_cells()) - len(regularizers.get("dropout").singles)
