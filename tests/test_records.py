"""Records: the schema users and the reporter rely on, written atomically."""

from __future__ import annotations

import csv
import json
import os
import stat

import pytest
import torch

from regbench import atomic
from regbench.atomic import atomic_write
from regbench.experiment import run_experiment
from regbench.results import provenance, records
from regbench.train.evaluate import COLUMNS

from .conftest import TINY


def test_record_schema_and_provenance(compose_cfg, tmp_path):
    cfg = compose_cfg(*TINY, "regularizers=[l2]", "regularizers.l2.strength=0.001")
    result = run_experiment(cfg)
    path = records.save(result, tmp_path)
    record = records.load(path)
    assert record["format"] == "regbench.result/1"
    assert record["job"]["regularizers"] == {"l2": {"strength": 0.001, "biases": False, "norms": False}}
    assert [(m["arm"], m["seed"]) for m in record["members"]] == [
        ("baseline", 0),
        ("baseline", 1),
        ("l2", 0),
        ("l2", 1),
    ]
    for m in record["members"]:
        assert set(m["final"]) == set(COLUMNS) | {"gap_acc", "gap_loss"}
        assert m["final"]["gap_acc"] == pytest.approx(m["final"]["train_acc"] - m["final"]["val_acc"])
        assert m["steps"] == 2 * (432 // 100)
    prov = record["provenance"]
    for key in ("regbench_version", "git_commit", "torch_version", "device", "config"):
        assert key in prov
    assert prov["denormals_flushed"] is (prov["device"] == "cpu")  # trainer.flush_denormals=true, on the CPU
    if prov["device"] == "cpu" and provenance.cpu_model() is not None:  # the model, where the machine says it
        assert prov["device_name"] == provenance.cpu_model() and "model" in prov["device_name"]
    assert prov["device"] == ("cuda" if torch.cuda.is_available() else "cpu")  # trainer.device=auto
    assert prov["config"]["trainer"]["epochs"] == 2 and "hydra" not in prov["config"]
    with open(tmp_path / records.HISTORY) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 * 2  # members x evaluations
    assert set(COLUMNS) <= set(rows[0])
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "result.json"
    atomic_write(target, "old")

    def boom(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, "new")
    assert target.read_text() == "old"
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("text", ["", "{", json.dumps({"format": "other"}), json.dumps([1, 2])])
def test_load_refuses_incomplete_or_foreign_records(tmp_path, text):
    path = tmp_path / "result.json"
    path.write_text(text)
    with pytest.raises(ValueError):
        records.load(path)


def test_provenance_records_this_checkout_commit_and_nothing_else(monkeypatch, tmp_path):
    import subprocess

    import regbench
    from regbench.results import provenance

    provenance.git_state.cache_clear()
    state = provenance.git_state()
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=provenance.Path(regbench.__file__).parent
    ).stdout.strip()
    assert state["git_commit"] == (head or None)
    # installed inside some other repository (e.g. a venv in a user's project): no commit is claimed
    other = tmp_path / "project"
    (other / "venv" / "regbench").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    monkeypatch.setattr(regbench, "__file__", str(other / "venv" / "regbench" / "__init__.py"))
    provenance.git_state.cache_clear()
    assert provenance.git_state() == {"git_commit": None, "git_dirty": None}
    provenance.git_state.cache_clear()


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_records_honour_the_umask_so_a_shared_folder_stays_readable(tmp_path, umask, mode):
    before = os.umask(umask)
    try:
        atomic_write(tmp_path / "x.json", "{}")
    finally:
        os.umask(before)
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == mode


def test_every_trainer_field_says_whether_it_changes_the_numbers():
    # a new trainer field must be placed here on purpose: it decides run ids, sweep pooling and report groups
    from dataclasses import fields

    from regbench.config import MEMBER_KEYS, NOT_NUMBERS, TrainerConfig
    from regbench.reporting.frame import NOT_CONTEXT
    from regbench.results.store import NOT_IN_RUN_ID
    from regbench.sweep import PER_JOB

    assert all({"numbers", "members"} <= set(f.metadata) for f in fields(TrainerConfig))
    assert set(NOT_NUMBERS) == {"progress", "resume", "checkpoint_every", "threads"}
    assert set(MEMBER_KEYS) == {"seed", "seeds"}
    assert set(NOT_IN_RUN_ID) == set(NOT_NUMBERS)
    assert set(PER_JOB) == set(NOT_NUMBERS) | set(MEMBER_KEYS)
    # predictions: what a job keeps, not its numbers: in the run id and the pooling key, out of the report's context
    assert set(NOT_CONTEXT) == set(PER_JOB) | {"device", "predictions"}


@pytest.mark.parametrize(
    "overrides,rid",
    [
        ([], "mnist1d-mlp-l2+dropout-784101af90e8"),
        (
            ["dataset=digits", "model=cnn", "trainer.threads=2", "trainer.resume=false", "trainer.progress=off"],
            "digits-cnn-l2+dropout-bf9bb60bd0aa",
        ),
    ],
)
def test_run_ids_of_existing_results_stay_the_same(compose_cfg, overrides, rid):
    from regbench.config import validate_config
    from regbench.results import store

    assert store.run_id(validate_config(compose_cfg(*overrides))) == rid


def test_a_field_added_later_enters_the_run_id_only_off_its_default(compose_cfg):
    """trainer.fast came after records existed: at its default the run id is the one before it (pinned above);
    set off, it is another job."""
    from regbench.config import validate_config
    from regbench.results import store

    plain = store.run_id(validate_config(compose_cfg("trainer.fast=false")))
    assert plain != "mnist1d-mlp-l2+dropout-784101af90e8"
    assert "fast" in store.identity(validate_config(compose_cfg("trainer.fast=false")))["trainer"]
