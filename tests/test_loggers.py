"""logger=[tensorboard,mlflow]: a finished job's every member, curves and finals, read back from each tool; a missing
package is refused before anything runs; a failing logger leaves the record alone; loggers change no numbers."""

from __future__ import annotations

import json
import logging

import pytest

from regbench import loggers, run
from regbench.errors import UsageError

ARGS = ["dataset=digits", "regularizers=[l2]", "trainer.epochs=3", "trainer.seeds=2", "trainer.progress=off"]


def test_tensorboard_and_mlflow_hold_every_members_curves_and_finals(tmp_path):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb, ml = tmp_path / "tb", tmp_path / "mlruns"
    record = run(
        *ARGS, "logger=[tensorboard,mlflow]", f"logger.tensorboard.log_dir={tb}", f"logger.mlflow.tracking_uri={ml}",
        results=tmp_path / "results",
    )  # fmt: skip
    members = record["members"]
    runs = sorted(p.name for p in (tb / record["run_id"]).iterdir())
    assert runs == sorted(f"{m['arm']}-seed{m['seed']}" for m in members)
    for m in members:
        acc = EventAccumulator(str(tb / record["run_id"] / f"{m['arm']}-seed{m['seed']}"))
        acc.Reload()
        curve = [(e.step, e.value) for e in acc.Scalars("val_acc")]
        rows = [r for r in record["history"] if r["member"] == m["member"]]
        assert curve == [(r["epoch"], pytest.approx(r["val_acc"])) for r in rows]
        assert acc.Scalars("final/test_acc")[0].value == pytest.approx(m["final"]["test_acc"])

    client = MlflowClient(tracking_uri=ml.resolve().as_uri())
    exp = client.get_experiment_by_name("regbench")
    found = client.search_runs([exp.experiment_id])
    parent = [r for r in found if r.info.run_name == record["run_id"]]
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id]
    assert len(parent) == 1 and len(children) == len(members)
    for child in children:
        m = next(m for m in members if f"{m['arm']}-seed{m['seed']}" == child.info.run_name)
        assert child.data.metrics["final_val_acc"] == pytest.approx(m["final"]["val_acc"])
        history = client.get_metric_history(child.info.run_id, "train_loss")
        assert [h.step for h in history] == [1, 2, 3]
    assert parent[0].data.params["trainer.epochs"] == "3"

    plain = run(*ARGS, results=tmp_path / "plain")  # logging changes neither the numbers nor the run id
    assert plain["run_id"] == record["run_id"] and [m["final"] for m in plain["members"]] == [
        m["final"] for m in members
    ]


def test_a_missing_package_is_one_line_before_anything_runs(tmp_path, monkeypatch):
    real = loggers.importlib.util.find_spec
    monkeypatch.setattr(loggers.importlib.util, "find_spec", lambda n: None if n == "mlflow" else real(n))
    with pytest.raises(UsageError, match=r"^logger=mlflow: needs the mlflow package; install it with: pip install"):
        run(*ARGS, "logger=[mlflow]", results=tmp_path)
    assert not (tmp_path / "jobs").exists()
    with pytest.raises(UsageError, match=r"^logger: unknown name 'wandb'"):
        run(*ARGS, "logger=[wandb]", results=tmp_path)


def test_a_failing_logger_warns_and_the_record_stands(tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a server that is not there: fail at once
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with caplog.at_level(logging.WARNING, logger="regbench"):
        record = run(*ARGS, "logger=[mlflow]", "logger.mlflow.tracking_uri=http://127.0.0.1:9", results=tmp_path)
    assert any("logger mlflow failed" in r.message for r in caplog.records)
    saved = json.loads((tmp_path / "jobs" / record["run_id"] / "result.json").read_text())
    assert saved["run_id"] == record["run_id"]


def test_an_unknown_logger_or_logger_key_through_the_command_is_one_line_exit_2(tmp_path):
    from .conftest import run_cli

    for args, message in (
        (["logger=[wandb]"], "logger: unknown name 'wandb'; known: mlflow, tensorboard"),
        (
            ["logger=[mlflow]", "logger.mlflow.uri=x"],
            "logger.mlflow.uri: unknown key; allowed: tracking_uri, experiment",
        ),
    ):
        r = run_cli("run", *args, cwd=tmp_path)
        assert (r.returncode, r.stderr) == (2, f"regbench: error: {message}\n"), r.stderr
    assert not (tmp_path / "results").exists()
