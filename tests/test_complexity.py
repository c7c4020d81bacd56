"""Complexity measures per member (train/complexity.py): checked against direct computation on set weights, and
their effect: an L1 run ends with more near-zero weights than its baseline, max-norm caps the rows' norms."""

from __future__ import annotations

import torch

from regbench import models
from regbench.config import validate_config
from regbench.data.base import Splits
from regbench.experiment import run_experiment
from regbench.models.base import ModelHints
from regbench.reporting.frame import complexity_summary
from regbench.train import complexity, evaluate

from .conftest import TINY


def linear_model(weight: torch.Tensor, n_in: int):
    """A depth-0 MLP (one linear layer) of one member with the given [classes, n_in] weight and zero bias."""
    cfg = models.get("mlp").schema(depth=0)
    model = models.build(cfg, (n_in,), "table", weight.shape[0], [0], ModelHints.plain(1))
    with torch.no_grad():
        model.head.weight.copy_(weight.unsqueeze(0))
        model.head.bias.zero_()
    return model


def test_norms_near_zero_spectral_and_margins_against_direct_computation():
    w = torch.tensor([[3.0, 0.0, 0.0005], [0.0, -2.0, 0.0], [0.0, 0.0, 1.0]])
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 3, (50,), generator=torch.Generator().manual_seed(1))
    splits = Splits("hand", "table", 3, x, y, x[:5], y[:5], x[:5], y[:5])
    model, keep = linear_model(w, 3), {}
    evaluate.evaluate(model, splits, torch.zeros(1, dtype=torch.int64), keep=keep)  # as the end of training does
    (c,) = complexity.measure(model, keep["margins"])
    (layer,) = c["layers"]
    assert abs(layer["norm"] - w.norm().item()) < 1e-5
    assert abs(layer["near_zero"] - 6 / 9) < 1e-6  # six entries below 1e-3, the 0.0005 among them
    assert abs(layer["spectral"] - 3.0) < 1e-5
    logits = x @ w.T
    true = logits[torch.arange(50), y]
    other = logits.scatter(1, y.unsqueeze(1), float("-inf")).amax(1)
    expect = torch.quantile(true - other, torch.tensor([0.1, 0.5, 0.9]))
    assert torch.allclose(torch.tensor([c["margin"]["q10"], c["margin"]["q50"], c["margin"]["q90"]]), expect, atol=1e-5)
    assert abs(c["margin"]["normalized"] - expect[1].item() / 3.0) < 1e-5


def test_l1_leaves_more_near_zero_weights_and_max_norm_caps_rows(compose_cfg):
    cfg = compose_cfg(
        *TINY[1:], "dataset=digits", "regularizers=[l1]", "regularizers.l1.strength=0.003", "trainer.epochs=4"
    )
    record = run_experiment(cfg, validate_config(cfg))
    sparse = {m["arm"]: complexity_summary(m["complexity"])["near_zero"] for m in record["members"]}
    assert sparse["l1"] > 2 * sparse["baseline"] + 0.05, sparse
    cfg = compose_cfg(*TINY[1:], "dataset=digits", "regularizers=[max_norm]", "regularizers.max_norm.c=0.5")
    record = run_experiment(cfg, validate_config(cfg))
    for m in record["members"]:
        norms = [layer["norm"] for layer in m["complexity"]["layers"]]
        if m["arm"] == "max_norm":  # every row at most 0.5: a layer's norm at most 0.5 * sqrt(rows)
            assert all(n <= 0.5 * r**0.5 + 1e-4 for n, r in zip(norms, (100, 100, 10))), norms
        else:
            assert max(norms) > 0.5 * 100**0.5, norms  # the baseline's are not capped


def test_the_report_shows_complexity_per_group_and_plots_it(tmp_path):
    import json

    from typer.testing import CliRunner

    from regbench import run
    from regbench.cli import app

    run("dataset=digits", "regularizers=[l1]", "regularizers.l1.strength=0.003", "trainer.epochs=4",
        "trainer.seeds=2", "trainer.progress=off", results=tmp_path)  # fmt: skip
    r = CliRunner().invoke(app, ["report", str(tmp_path), "--complexity", "--format", "json"])
    assert r.exit_code == 0, r.stderr
    rows = {row["arm"]: row for row in json.loads(r.stdout)}
    assert rows["l1"]["members"] == rows["baseline"]["members"] == 2
    assert (
        rows["l1"]["near_zero"] > rows["baseline"]["near_zero"]
        and rows["l1"]["weight_norm"] < rows["baseline"]["weight_norm"]
    )
    r = CliRunner().invoke(app, ["report", str(tmp_path), "--plots", str(tmp_path / "figs")])
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "figs" / "complexity.png").is_file()


def test_the_final_evaluation_keeps_margins_and_test_predictions_from_its_own_logits():
    w = torch.randn(3, 4, generator=torch.Generator().manual_seed(2))
    x = torch.randn(30, 4, generator=torch.Generator().manual_seed(3))
    y = torch.randint(0, 3, (30,), generator=torch.Generator().manual_seed(4))
    splits = Splits("hand", "table", 3, x, y, x[:7], y[:7], x[:9], y[:9])
    keep = {"log_probs": True}
    evaluate.evaluate(linear_model(w, 4), splits, torch.zeros(1, dtype=torch.int64), keep=keep)
    logits = x @ w.T
    true = logits[torch.arange(30), y]
    other = logits.scatter(1, y.unsqueeze(1), float("-inf")).amax(1)
    torch.testing.assert_close(keep["margins"][0], true - other)
    torch.testing.assert_close(keep["log_probs"][0], logits[:9].log_softmax(1))
    without = {}
    evaluate.evaluate(linear_model(w, 4), splits, torch.zeros(1, dtype=torch.int64), keep=without)
    assert "log_probs" not in without  # kept only when asked (trainer.predictions)


def test_complexity_over_records_without_it_is_one_line(tmp_path):
    from typer.testing import CliRunner

    from regbench.cli import app

    from .report_records import job

    job(tmp_path, "l2", {"strength": 1e-3}, [(0.9, 0.6, 0.6)] * 2, [(0.8, 0.7, 0.6)] * 2)  # an older record
    r = CliRunner().invoke(app, ["report", str(tmp_path), "--complexity"])
    assert r.exit_code == 1 and r.stderr.startswith("regbench: error: --complexity: no record has complexity")
    assert r.stderr.count("\n") == 1
