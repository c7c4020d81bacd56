"""Early stopping: each criterion on hand-made curves, restoring the best weights, and replay without training."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from regbench import data
from regbench.config import validate_config
from regbench.regularizers.early_stopping import Criterion, EarlyStoppingConfig, replay
from regbench.train.engine import train_population
from regbench.train.evaluate import COLUMNS
from regbench.train.population import members_for

from .conftest import TINY


def rows(val_loss, train_loss=None, val_acc=None):
    """[T, 1, 6] metrics rows for one member from hand-made curves (unused columns filled with 0.5)."""
    t = len(val_loss)
    m = torch.full((t, 1, len(COLUMNS)), 0.5)
    m[:, 0, COLUMNS.index("val_loss")] = torch.tensor(val_loss)
    if train_loss is not None:
        m[:, 0, COLUMNS.index("train_loss")] = torch.tensor(train_loss)
    if val_acc is not None:
        m[:, 0, COLUMNS.index("val_acc")] = torch.tensor(val_acc)
    return m


def run(cfg: EarlyStoppingConfig, metrics: torch.Tensor) -> tuple[int | None, int]:
    """(stop epoch or None, best epoch) of one member over the curve, epochs counted from 1."""
    crit = Criterion([cfg], "cpu")
    for epoch, row in enumerate(metrics, start=1):
        stop, _ = crit.update(row, epoch)
        if stop.item():
            return epoch, crit.best_epoch.item()
    return None, crit.best_epoch.item()


def test_patience_counts_evaluations_without_improvement():
    cfg = EarlyStoppingConfig(criterion="patience", patience=3)
    assert run(cfg, rows([5, 4, 3, 3.5, 3.2, 3.1, 2.0])) == (6, 3)
    assert run(cfg, rows([5, 4, 3, 3.5, 3.2, 2.9, 3.0])) == (None, 6)


def test_min_delta_ignores_improvements_smaller_than_it():
    cfg = EarlyStoppingConfig(criterion="patience", patience=2, min_delta=0.1)
    assert run(cfg, rows([1.0, 0.95, 0.92, 0.5])) == (3, 3)  # the best weights are still the lowest error's


def test_gl_stops_when_generalisation_loss_exceeds_alpha_percent():
    cfg = EarlyStoppingConfig(criterion="gl", gl_alpha=5.0)
    # GL: 0, 0, 2.5, 6.25 (percent above the best so far, 0.8)
    assert run(cfg, rows([1.0, 0.8, 0.82, 0.85, 0.7])) == (4, 2)
    assert run(EarlyStoppingConfig(criterion="gl", gl_alpha=7.0), rows([1.0, 0.8, 0.82, 0.85])) == (None, 2)


def test_pq_weighs_generalisation_loss_by_training_progress_at_strip_ends():
    val, train = [1.0, 0.9, 0.95, 0.96], [1.0, 0.5, 0.45, 0.44]
    # t=3 is inside a strip (k=2): not checked though GL(3) = 5.6. At t=4: GL = 6.67,
    # P_2 = 1000 * (mean(0.45, 0.44) / 0.44 - 1) = 11.36, PQ = 0.587.
    assert run(EarlyStoppingConfig(criterion="pq", strip=2, pq_alpha=0.5), rows(val, train)) == (4, 2)
    assert run(EarlyStoppingConfig(criterion="pq", strip=2, pq_alpha=0.6), rows(val, train)) == (None, 2)


def test_up_stops_after_s_successive_strips_with_rising_validation_error():
    cfg = EarlyStoppingConfig(criterion="up", strip=2, up_strips=2)
    # strip ends t = 2, 4, 6: 1.0 -> 1.1 -> 1.2, two rises in a row (values inside strips do not count)
    assert run(cfg, rows([0.5, 1.0, 0.3, 1.1, 0.2, 1.2])) == (6, 5)
    # a fall at t=6 resets the count: rises at 8 and 10 stop it at 10
    assert run(cfg, rows([2, 1.0, 2, 1.1, 2, 1.05, 2, 1.2, 2, 1.3])) == (10, 2)


def test_val_acc_is_watched_as_an_error_rate():
    cfg = EarlyStoppingConfig(criterion="patience", monitor="val_acc", patience=2)
    assert run(cfg, rows([1, 1, 1, 1, 1], val_acc=[0.5, 0.7, 0.6, 0.7, 0.9])) == (4, 2)


def test_members_with_different_criteria_stop_as_each_would_alone():
    cfgs = [
        EarlyStoppingConfig(criterion="patience", patience=2),
        None,
        EarlyStoppingConfig(criterion="gl", gl_alpha=1.0),
        EarlyStoppingConfig(criterion="up", strip=1, up_strips=2),
    ]
    curve = [[1.0, 0.8, 0.81, 0.9, 0.95, 0.7], [1.0, 0.8, 0.82, 0.83, 0.6, 0.5]]
    metrics = torch.cat([rows(curve[j % 2]) for j in range(4)], dim=1)  # [T, 4, 6]
    crit = Criterion(cfgs, "cpu")
    stops = [None] * 4
    for epoch, row in enumerate(metrics, start=1):
        stop, _ = crit.update(row, epoch)
        for j in torch.nonzero(stop).flatten().tolist():
            stops[j] = stops[j] or epoch
    for j, c in enumerate(cfgs):
        alone = run(c, rows(curve[j % 2]))[0] if c else None
        assert stops[j] == alone
    assert stops == [4, None, 3, 4]


def test_a_stopped_member_has_its_best_weights_back_and_records_its_epochs(compose_cfg):
    spec = validate_config(
        compose_cfg(
            *TINY, "trainer.epochs=12", "regularizers=[early_stopping]", "regularizers.early_stopping.patience=2"
        )
    )
    splits = data.load(spec.dataset)
    members = members_for(spec)  # baseline 0, 1; early_stopping 0, 1
    pop = train_population(splits, spec.model, spec.trainer, members, "cpu")
    hist = pd.DataFrame(pop.history)
    assert pop.epochs == 12  # the baselines trained the whole budget
    for j in (0, 1):
        assert pop.frozen_at[j] is None and "stop_epoch" not in pop.extras[j]
        last = hist[(hist.member == j) & (hist.epoch == 12)][list(COLUMNS)].to_numpy()[0]
        torch.testing.assert_close(pop.final[j], torch.tensor(last, dtype=torch.float32))
    for j in (2, 3):
        stop, best = pop.extras[j]["stop_epoch"], pop.extras[j]["best_epoch"]
        assert stop is not None and stop == pop.frozen_at[j]  # small data: the validation loss turns quickly
        mine = hist[(hist.member == j) & (hist.epoch <= stop)]
        assert best == int(mine.loc[mine.val_loss.idxmin(), "epoch"]) and best <= stop - 2
        at_best = mine[mine.epoch == best][list(COLUMNS)].to_numpy()[0]
        # evaluation is deterministic, so the restored weights give back the best evaluation's numbers exactly
        torch.testing.assert_close(pop.final[j], torch.tensor(at_best, dtype=torch.float32), rtol=1e-5, atol=1e-6)

    # Replaying the criterion on the baselines' recorded curves, without training, finds the same epochs and the
    # same final numbers: the early-stopped member is its baseline until it stops.
    again = replay(hist, EarlyStoppingConfig(patience=2)).set_index("member")
    for base, es in ((0, 2), (1, 3)):
        assert again.at[base, "stop_epoch"] == pop.extras[es]["stop_epoch"]
        assert again.at[base, "best_epoch"] == pop.extras[es]["best_epoch"]
        replayed = torch.tensor(again.loc[base, list(COLUMNS)].to_numpy(dtype="float32"))
        torch.testing.assert_close(replayed, pop.final[es], rtol=1e-4, atol=1e-4)
        assert again.at[es, "stop_epoch"] == pop.extras[es]["stop_epoch"]  # its own frozen tail changes nothing


def test_early_stop_command_replays_a_recorded_run(compose_cfg, tmp_path):
    from typer.testing import CliRunner

    from regbench.cli import app
    from regbench.experiment import run_experiment
    from regbench.results import records

    result = run_experiment(compose_cfg(*TINY, "trainer.epochs=8", "regularizers=[early_stopping]"))
    records.save(result, tmp_path)
    members = records.load(tmp_path / "result.json")["members"]
    assert all("best_epoch" in m and "stop_epoch" in m for m in members if m["arm"] == "early_stopping")
    runner = CliRunner()
    out = runner.invoke(app, ["early-stop", str(tmp_path), "criterion=gl", "gl_alpha=1"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "early stopping by gl on val_loss" in out.stdout and "best epoch" in out.stdout
    bad = runner.invoke(app, ["early-stop", str(tmp_path), "criterion=later"])
    assert bad.exit_code == 2
    assert bad.stderr == "regbench: error: early_stopping.criterion='later': must be one of patience, gl, pq, up\n"
    missing = runner.invoke(app, ["early-stop", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and missing.stderr.endswith("nowhere: no history.csv there\n")


@pytest.mark.parametrize(
    "override,message",
    [
        ("regularizers.early_stopping.patience=0", "regularizers.early_stopping.patience=0: must be in [1, inf)"),
        ("regularizers.early_stopping.monitor=loss", "regularizers.early_stopping.monitor='loss': must be one of"),
        ("regularizers.elastic_net.l1_ratio=1.5", "regularizers.elastic_net.l1_ratio=1.5: must be in [0.0, 1.0]"),
        ("regularizers.mixup.alpha=0", "regularizers.mixup.alpha=0.0: must be in (0.0, 100.0]"),
        ("regularizers.max_norm.c=-1", "regularizers.max_norm.c=-1.0: must be in (0.0, inf)"),
    ],
)
def test_bad_settings_of_the_new_regularizers_name_the_key(compose_cfg, override, message):
    from regbench.errors import UsageError

    name = override.split(".")[1]
    with pytest.raises(UsageError) as err:
        validate_config(compose_cfg(f"regularizers=[{name}]", override))
    assert str(err.value).startswith(message)


def test_early_stop_replays_the_jobs_own_settings_unless_told_otherwise(compose_cfg, tmp_path):
    from typer.testing import CliRunner

    from regbench.cli import app
    from regbench.experiment import run_experiment
    from regbench.results import records

    cfg = compose_cfg(
        *TINY, "trainer.epochs=10", "regularizers=[early_stopping]", "regularizers.early_stopping.patience=2"
    )
    result = run_experiment(cfg)
    records.save(result, tmp_path)
    own = {m["member"]: m["stop_epoch"] for m in result["members"] if m["arm"] == "early_stopping"}
    assert all(e is not None for e in own.values())  # patience 2 stops within 10 epochs; the default 10 cannot
    runner = CliRunner()
    out = runner.invoke(app, ["early-stop", str(tmp_path)], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "early stopping by patience on val_loss, patience=2, min_delta=0.0 (the job's settings)" in out.stdout
    history = pd.read_csv(tmp_path / "history.csv")
    replayed = replay(history, EarlyStoppingConfig(patience=2)).set_index("member")["stop_epoch"]
    assert {m: replayed[m] for m in own} == own  # the job's own stops, as the record has them
    shown = [line.replace("│", " ").split()[:4] for line in out.stdout.splitlines()]
    seeds = {m["member"]: m["seed"] for m in result["members"]}
    assert all([str(m), "early_stopping", str(seeds[m]), str(stop)] in shown for m, stop in own.items())
    out = runner.invoke(app, ["early-stop", str(tmp_path), "patience=3"], env={"COLUMNS": "200"})
    assert "patience=3, min_delta=0.0 (the job's settings, overridden)" in out.stdout
