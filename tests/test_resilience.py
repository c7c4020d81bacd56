"""In-process resilience: divergence isolated per member, checkpoints that resume exactly, stable run ids."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time

import pytest
import torch
from rich.console import Console

from regbench import data
from regbench.config import validate_config
from regbench.experiment import run_experiment, set_deterministic
from regbench.reporting.frame import members_frame
from regbench.reporting.summary import render, summarize
from regbench.results import store
from regbench.train import checkpoint
from regbench.train.engine import train_population
from regbench.train.population import members_for

from .conftest import TINY, Interrupt, StopAt

# An L2 strength whose gradient, under plain SGD, multiplies the weights by ~-1e36 a step: they overflow within two
# steps. (Under Adam the gradient is normalised and the member would train on, finite.)
HUGE = 1e38
SGD = "trainer.optimizer=sgd"


def _spec(compose_cfg, *overrides):
    return validate_config(compose_cfg(*TINY, *overrides))


def test_a_diverging_member_is_frozen_and_marked_while_the_others_train_on(compose_cfg):
    spec = _spec(compose_cfg, "trainer.epochs=3", SGD, "regularizers=[l2]", f"regularizers.l2.strength={HUGE}")
    splits = data.load(spec.dataset)
    members = members_for(spec)  # baseline 0, 1; l2 0, 1
    mixed = [members[0], members[2], members[1]]  # a diverging member between two healthy ones
    pop = train_population(splits, spec.model, spec.trainer, mixed, "cpu")
    assert pop.diverged_at == [None, 1, None]
    assert pop.frozen_at == [None, 1, None]
    assert pop.epochs == 3  # the population did not stop with it
    healthy = train_population(splits, spec.model, spec.trainer, [members[0], members[1]], "cpu")
    assert torch.isfinite(pop.final[[0, 2]]).all()
    torch.testing.assert_close(pop.final[[0, 2]], healthy.final, rtol=1e-4, atol=1e-4)


def test_divergence_shows_in_the_record_and_the_table(compose_cfg):
    cfg = compose_cfg(*TINY, SGD, "regularizers=[l2]", f"regularizers.l2.strength={HUGE}")
    record = run_experiment(cfg)
    by_arm = {(m["arm"], m["seed"]): m for m in record["members"]}
    assert by_arm[("l2", 0)]["diverged"] and by_arm[("l2", 0)]["diverged_at_epoch"] == 1
    assert set(by_arm[("l2", 0)]["final"].values()) == {None}
    assert not by_arm[("baseline", 0)]["diverged"] and by_arm[("baseline", 0)]["diverged_at_epoch"] is None
    assert math.isfinite(by_arm[("baseline", 1)]["final"]["val_acc"])
    console = Console(record=True, width=120)
    render(summarize(members_frame(record)), console=console)
    text = console.export_text()
    assert "diverged (left out)" in text and "2 of 2" in text


@pytest.mark.parametrize(
    "regs",
    [
        # dropout draws per-step masks and Adam keeps moments: both must come back from the checkpoint exactly
        ["regularizers=[l2,dropout]"],
        # early stopping keeps best weights and its criterion's counters between evaluations
        ["regularizers=[early_stopping]", "regularizers.early_stopping.patience=1"],
    ],
)
def test_a_run_resumed_from_its_checkpoint_ends_exactly_like_an_uninterrupted_one(compose_cfg, tmp_path, regs):
    spec = _spec(compose_cfg, "trainer.epochs=4", *regs, "trainer.checkpoint_every=1")
    splits = data.load(spec.dataset)
    members = members_for(spec)
    whole = train_population(splits, spec.model, spec.trainer, members, "cpu")

    ck = checkpoint.Checkpointing(tmp_path / "checkpoint.pt", every=1, key="run")
    with pytest.raises(Interrupt):
        train_population(splits, spec.model, spec.trainer, members, "cpu", StopAt(3), ck)
    saved = torch.load(ck.path, weights_only=True)
    assert saved["epoch"] == 2 and saved["step"] == 2 * (432 // 100)
    resumed = train_population(splits, spec.model, spec.trainer, members, "cpu", None, ck)
    assert torch.equal(resumed.final, whole.final)
    assert resumed.history == whole.history and resumed.extras == whole.extras
    assert resumed.frozen_at == whole.frozen_at
    assert (resumed.steps, resumed.epochs) == (whole.steps, whole.epochs)


def test_a_checkpoint_of_another_run_or_a_forced_rerun_starts_afresh(compose_cfg, tmp_path):
    spec = _spec(compose_cfg, "trainer.epochs=3")
    splits = data.load(spec.dataset)
    members = members_for(spec)
    ck = checkpoint.Checkpointing(tmp_path / "checkpoint.pt", every=1, key="a")
    with pytest.raises(Interrupt):
        train_population(splits, spec.model, spec.trainer, members, "cpu", StopAt(2), ck)
    assert checkpoint.load(ck, "cpu")["epoch"] == 1
    assert checkpoint.load(checkpoint.Checkpointing(ck.path, 1, key="b"), "cpu") is None
    assert checkpoint.load(checkpoint.Checkpointing(ck.path, 1, key="a", load=False), "cpu") is None
    ck.path.write_bytes(b"not a checkpoint")
    assert checkpoint.load(ck, "cpu") is None


def test_the_run_id_follows_what_is_computed_not_how_it_is_written(compose_cfg):
    base = store.run_id(_spec(compose_cfg))
    assert base.startswith("mnist1d-mlp-l2+dropout-")
    assert store.run_id(_spec(compose_cfg, "trainer.lr=1e-2")) == base  # 0.01 by default
    assert store.run_id(_spec(compose_cfg, "trainer.progress=log", "trainer.checkpoint_every=5")) == base
    assert store.run_id(_spec(compose_cfg, "trainer.resume=false")) == base
    assert store.run_id(_spec(compose_cfg, "trainer.lr=0.02")) != base
    assert store.run_id(_spec(compose_cfg, "regularizers.l2.strength=0.001")) != base
    assert store.run_id(_spec(compose_cfg, "regularizers=[dropout,l2]")) != base  # transforms apply in order


def test_a_corrupt_or_foreign_record_reads_as_incomplete(tmp_path):
    assert not store.is_complete(tmp_path)  # no record
    (tmp_path / "result.json").write_text('{"format": "regbench.result/1", "members": [')
    assert not store.is_complete(tmp_path)
    (tmp_path / "result.json").write_bytes(b"\xff\xfe garbage")
    assert not store.is_complete(tmp_path)
    (tmp_path / "result.json").write_text('{"format": "regbench.result/1", "members": [], "run_id": "x"}')
    assert store.is_complete(tmp_path, "x") and not store.is_complete(tmp_path, "y")


def test_a_failure_is_recorded_beside_never_as_the_record(tmp_path):
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError as err:
        path = store.write_failure(tmp_path, err, "rid")
    failure = path.read_text()
    assert path.name == "failure.json" and '"error": "RuntimeError"' in failure and '"message": "boom"' in failure
    assert "Traceback" in (tmp_path / store.TRACEBACK).read_text()
    assert not store.is_complete(tmp_path)
    store.clear_failure(tmp_path)
    assert not list(tmp_path.iterdir())


def test_a_held_lock_is_refused_without_waiting_and_released_after(tmp_path):
    with store.lock(tmp_path), pytest.raises(BlockingIOError), store.lock(tmp_path, wait=False):
        pass
    with store.lock(tmp_path, wait=False):
        pass
    assert not (tmp_path / store.LOCK).exists()  # no empty lock file left in a finished job's folder


def test_the_lock_stays_exclusive_though_each_holder_removes_its_file(tmp_path):
    events = []

    def waiter():
        with store.lock(tmp_path):
            events.append("B in")
            time.sleep(0.3)
            events.append("B out")

    with store.lock(tmp_path):
        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(0.2)  # B now waits on the file this holder removes as it lets go
    with store.lock(tmp_path):  # a newcomer creates a new file: B, woken on the old one, must not hold at once
        events.append("C in")
        time.sleep(0.3)
        events.append("C out")
    thread.join()
    assert events in (["B in", "B out", "C in", "C out"], ["C in", "C out", "B in", "B out"])
    assert not (tmp_path / store.LOCK).exists()


def test_the_deterministic_switch_sets_torch_up_and_changes_nothing_on_cpu(compose_cfg, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        strict = run_experiment(compose_cfg(*TINY, "trainer.deterministic=true"))
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        plain = run_experiment(compose_cfg(*TINY))
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        set_deterministic(False)
    assert [m["final"] for m in strict["members"]] == [m["final"] for m in plain["members"]]
    assert strict["run_id"] != plain["run_id"]


def test_a_sweep_folder_reports_the_jobs_its_index_names(tmp_path):
    from regbench.reporting.collect import find

    done, failed = tmp_path / "jobs" / "a", tmp_path / "jobs" / "b"
    for folder in (done, failed, tmp_path / "jobs" / "other"):
        folder.mkdir(parents=True)
    for folder in (done, tmp_path / "jobs" / "other"):
        (folder / "result.json").write_text('{"format": "regbench.result/1", "members": []}')
    sweep = tmp_path / "sweeps" / "s1"
    sweep.mkdir(parents=True)
    for rel, status in (("../../jobs/a", "trained"), ("../../jobs/b", "failed"), ("../../jobs/a", "skipped")):
        store.append_line(sweep / store.SWEEP_INDEX, {"dir": rel, "status": status})
    with open(sweep / store.SWEEP_INDEX, "a") as f:
        f.write('{"dir": "../../jobs/x", "sta')  # a line cut short by a kill
    assert store.indexed_jobs(sweep / store.SWEEP_INDEX) == [done.resolve(), failed.resolve()]
    assert find([sweep]) == [(done / "result.json").resolve()]


def test_a_run_imports_no_module_it_does_not_use():
    # torch.use_deterministic_algorithms imports torch._inductor (~1.7 s): a run with the default (off) must not pay
    # it; any torch optimizer's constructor imports torch._dynamo (1.1-1.7 s), which regbench's Adam avoids;
    # scipy.stats (1.3-1.8 s) serves the report's intervals and tests, not the table a run prints
    code = (
        "import sys; from types import SimpleNamespace; import torch; "
        "import regbench.cli, regbench.hydra_app, regbench.reporting.summary; "
        "from regbench.experiment import set_deterministic; from regbench.train import optim; "
        "set_deterministic(False); "
        "net = torch.nn.Linear(3, 2); opt = optim.make(net, SimpleNamespace(optimizer='adam', lr=0.1)); "
        "net(torch.randn(4, 3)).sum().backward(); opt.step(); opt.step(); opt.state_dict(); "
        "print([m for m in ('torch._inductor', 'torch._dynamo', 'scipy.stats') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
