"""Bias-variance (reporting/bias_variance.py): the cross-entropy split sums to the members' mean test loss, and
reads what it should on hand-made predictions; trainer.predictions keeps them; dataset.bootstrap resamples per seed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from regbench import run
from regbench.cli import app
from regbench.reporting.bias_variance import decompose
from regbench.results import records
from regbench.train.engine import Schedule


def logp(p) -> np.ndarray:
    return np.log(np.asarray(p, dtype=np.float64))


def test_cross_entropy_splits_exactly_into_bias_and_variance():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 40, 4))
    lp = z - np.log(np.exp(z).sum(2, keepdims=True))
    y = rng.integers(0, 4, 40)
    d = decompose(lp, y)
    assert d["ce"] == pytest.approx(-lp[:, np.arange(40), y].mean(), abs=1e-12)
    assert d["ce_bias"] + d["ce_variance"] == pytest.approx(d["ce"], abs=1e-12)
    assert d["ce_variance"] > 0


def test_hand_made_members_agreeing_and_disagreeing():
    y = np.array([0, 1])
    same = logp([[[0.8, 0.2], [0.3, 0.7]]] * 3)  # three identical members: no variance
    d = decompose(same, y)
    assert d["ce_variance"] == pytest.approx(0.0, abs=1e-12)
    assert d["ce_bias"] == pytest.approx(-(np.log(0.8) + np.log(0.7)) / 2)
    assert (d["err"], d["vote_err"], d["disagreement"]) == (0.0, 0.0, 0.0)
    # two members that are each sure of a different class on example 0: the geometric mean is uniform there
    apart = logp([[[0.9, 0.1], [0.5, 0.5 + 1e-12]], [[0.1, 0.9], [0.5, 0.5 + 1e-12]]])
    d = decompose(apart, y)
    kl = 0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(0.5 / 0.1)  # KL(uniform || (0.9, 0.1)), the same for both members
    assert d["ce_bias"] == pytest.approx((np.log(2) + np.log(2)) / 2, abs=1e-9)
    assert d["ce_variance"] == pytest.approx(kl / 2, abs=1e-9)  # the second example adds none
    assert d["err"] == pytest.approx(0.25) and d["disagreement"] == pytest.approx(0.25)  # one member wrong on ex. 0
    assert d["vote_err"] == 0.0  # a tie on example 0 goes to the lowest class, which is right


def test_predictions_are_kept_and_the_report_decomposes_them(tmp_path):
    args = ["dataset=digits", "regularizers=[dropout]", "trainer.epochs=2", "trainer.seeds=3", "trainer.progress=off"]
    record = run(*args, "trainer.predictions=true", results=tmp_path)
    folder = tmp_path / "jobs" / record["run_id"]
    saved = json.loads((folder / records.RESULT).read_text())
    assert saved["predictions"] == records.PREDICTIONS and "predictions" not in saved["members"][0]
    with np.load(folder / records.PREDICTIONS) as z:
        n_test = saved["job"]["sizes"]["test"]
        assert z["labels"].shape == (n_test,) and z["member_0"].shape == (n_test, 10)
        assert z["member_0"].dtype == np.float16
    r = CliRunner().invoke(app, ["report", str(tmp_path), "--bias-variance", "--format", "json"])
    assert r.exit_code == 0, r.stderr
    rows = {row["setting"]: row for row in json.loads(r.stdout)}
    assert set(rows) == {"baseline", "dropout(p=0.2,input_p=0.0)"}
    for row in rows.values():
        members = [m for m in saved["members"] if m["arm"] == row["arm"]]
        assert row["members"] == 3
        assert row["ce"] == pytest.approx(np.mean([m["final"]["test_loss"] for m in members]), abs=5e-3)  # float16
        assert row["err"] == pytest.approx(1 - np.mean([m["final"]["test_acc"] for m in members]), abs=1e-6)
        assert row["ce_bias"] + row["ce_variance"] == pytest.approx(row["ce"], abs=1e-9)
    plain = run(*args, results=tmp_path)  # without predictions: another run id, no file, same numbers
    assert plain["run_id"] != record["run_id"]
    assert [m["final"] for m in plain["members"]] == [m["final"] for m in saved["members"]]
    r = CliRunner().invoke(app, ["report", str(tmp_path / "jobs" / plain["run_id"]), "--bias-variance"])
    assert r.exit_code == 1 and "trainer.predictions=true" in r.stderr and r.stderr.count("\n") == 1


def test_bootstrap_draws_each_seeds_own_resample():
    plain = Schedule([0, 0, 1], 200, 50, "cpu")
    boot = Schedule([0, 0, 1], 200, 50, "cpu", bootstrap=True)
    order = plain.epoch()  # [steps, K, B]
    assert sorted(order[:, 0].flatten().tolist()) == list(range(200))  # a permutation: every example once
    used = boot.epoch()
    assert torch.equal(used[:, 0], used[:, 1])  # baseline and regularized member of seed 0: the same data
    seed0, seed1 = used[:, 0].flatten(), used[:, 2].flatten()
    assert set(seed0.tolist()) == set(boot.resamples[0].tolist()) != set(seed1.tolist())
    assert len(set(seed0.tolist())) < 150  # drawn with replacement: about 63% of the examples, some twice
    again = Schedule([0], 200, 50, "cpu", bootstrap=True)  # a seed's resample is its own, in any population
    assert torch.equal(again.resamples[0], boot.resamples[0])
