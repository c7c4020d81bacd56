"""The report's numbers: grouping, pairing, deduplication, intervals, p-values and Holm, against scipy and by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from typer.testing import CliRunner

from regbench.errors import RunError, UsageError
from regbench.reporting import formats, stats
from regbench.reporting.build import build

from .report_records import job, metrics, write

BASE = [(0.90, 0.60, 0.62), (0.95, 0.58, 0.61), (0.92, 0.63, 0.60), (0.97, 0.59, 0.64)]
L2 = [(0.80, 0.66, 0.65), (0.84, 0.61, 0.66), (0.83, 0.67, 0.61), (0.85, 0.64, 0.69)]
DROP = [(0.88, 0.60, 0.63), (0.90, 0.60, 0.60), (0.91, 0.62, 0.62), (0.93, 0.62, 0.64)]
BASE_LONG = [(0.99, 0.50, 0.60), (0.98, 0.52, 0.59)]  # another budget: other baselines for the same seeds
L1 = [(0.89, 0.61, 0.62), (0.96, 0.57, 0.61), (0.90, 0.64, 0.60), (0.97, 0.60, 0.64)]


def row(t: pd.DataFrame, setting: str) -> pd.Series:
    (i,) = t.index[t["setting"] == setting]
    return t.loc[i]


@pytest.fixture
def sweep(tmp_path):
    """A three-job sweep: each job carries the same baselines, as `regbench run -m` leaves them."""
    job(tmp_path / "sweep" / "0", "l2", {"strength": 0.001}, BASE, L2)
    job(tmp_path / "sweep" / "1", "dropout", {"p": 0.5}, BASE, DROP)
    job(tmp_path / "sweep" / "2", "l1", {"strength": 0.0001}, BASE, L1)
    return tmp_path / "sweep"


def test_table_values_intervals_and_p_match_scipy(sweep):
    t = build([sweep])
    assert list(t["setting"]) == ["baseline", "dropout(p=0.5)", "l1(strength=0.0001)", "l2(strength=0.001)"]
    base = row(t, "baseline")
    assert base["seeds"] == 4  # three records hold the same baselines: counted once per seed
    assert base["val_acc"] == pytest.approx(np.mean([b[1] for b in BASE]), abs=1e-12)
    assert base["train_loss"] == pytest.approx(np.mean([1 - b[0] for b in BASE]), abs=1e-12)
    r = row(t, "l2(strength=0.001)")
    gap_b = np.array([b[0] - b[1] for b in BASE])
    gap_r = np.array([x[0] - x[1] for x in L2])
    d = gap_r - gap_b
    assert r["gap_acc"] == pytest.approx(gap_r.mean(), abs=1e-12)
    assert r["d_gap_acc"] == pytest.approx(d.mean(), abs=1e-12)
    lo, hi = sps.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=sps.sem(d))
    assert (r["d_gap_acc_lo"], r["d_gap_acc_hi"]) == (pytest.approx(lo, abs=1e-12), pytest.approx(hi, abs=1e-12))
    assert r["p_gap_acc_raw"] == pytest.approx(sps.ttest_rel(gap_r, gap_b).pvalue, rel=1e-9)
    dv = np.array([x[1] for x in L2]) - np.array([b[1] for b in BASE])
    assert r["d_val_acc"] == pytest.approx(dv.mean(), abs=1e-12)
    assert r["p_val_acc_raw"] == pytest.approx(sps.ttest_rel([x[1] for x in L2], [b[1] for b in BASE]).pvalue)
    assert r["seeds"] == 4 and r["pairs"] == 4


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 over m=3: 3*0.01=0.03; 2*0.03=0.06; max(0.06, 1*0.04)=0.06. NaN is no comparison.
    assert np.allclose(stats.holm([0.04, 0.01, np.nan, 0.03]), [0.06, 0.03, np.nan, 0.06], equal_nan=True)
    assert list(stats.holm([0.6, 0.5])) == [1.0, 1.0]  # capped at 1


def test_holm_in_the_table_counts_each_comparison(sweep):
    t = build([sweep])
    reg = t[t["arm"] != "baseline"]
    raw = reg["p_gap_acc_raw"].to_numpy()
    order = np.argsort(raw)
    expected = np.empty(3)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * raw[i]))
        expected[i] = running
    assert np.allclose(reg["p_gap_acc"], expected, rtol=1e-12)
    assert (reg["p_gap_acc"] >= reg["p_gap_acc_raw"]).all()
    # Filtering to one regularizer leaves one comparison: nothing to correct.
    one = build([sweep], regularizers=["l2"])
    assert list(one["setting"]) == ["baseline", "l2(strength=0.001)"]
    assert row(one, "l2(strength=0.001)")["p_gap_acc"] == pytest.approx(row(t, "l2(strength=0.001)")["p_gap_acc_raw"])


def test_runs_with_different_budgets_never_pair_or_merge(tmp_path):
    job(tmp_path / "a", "l2", {"strength": 0.001}, BASE, L2, epochs=2)
    job(tmp_path / "b", "l2", {"strength": 0.001}, BASE_LONG, L1[:2], epochs=3)
    # A regularized record with no baseline of its own, next to a baseline of another budget.
    write(tmp_path / "c", [("dropout", 0, {"dropout": {"p": 0.5}}, metrics(*DROP[0]))], epochs=3)
    t = build([tmp_path])
    assert sorted(set(t["config"])) == ["trainer.epochs=2", "trainer.epochs=3"]
    two = t[t["config"] == "trainer.epochs=2"]
    three = t[t["config"] == "trainer.epochs=3"]
    assert row(two, "l2(strength=0.001)")["seeds"] == 4
    d3 = row(three, "l2(strength=0.001)")
    expected = np.mean([(r[0] - r[1]) - (b[0] - b[1]) for r, b in zip(L1[:2], BASE_LONG)])
    assert d3["d_gap_acc"] == pytest.approx(expected, abs=1e-12)
    # The dropout member pairs with the epochs=3 baseline of seed 0 (another record, same context), never epochs=2.
    d = row(three, "dropout(p=0.5)")
    assert d["pairs"] == 1
    assert d["d_gap_acc"] == pytest.approx((DROP[0][0] - DROP[0][1]) - (BASE_LONG[0][0] - BASE_LONG[0][1]), abs=1e-12)


def test_a_different_device_is_another_context(tmp_path):
    job(tmp_path / "a", "l2", {"strength": 0.001}, BASE, L2, device="cpu")
    write(tmp_path / "b", [("dropout", 0, {"dropout": {"p": 0.5}}, metrics(*DROP[0]))], device="cuda:0")
    t = build([tmp_path])
    assert row(t[t["config"] == "device=cuda"], "dropout(p=0.5)")["pairs"] == 0
    assert "no baseline" in formats.markdown(t)


def test_one_seed_says_so_with_no_interval_and_no_p(tmp_path):
    job(tmp_path, "l2", {"strength": 0.001}, BASE[:1], L2[:1])
    t = build([tmp_path])
    r = row(t, "l2(strength=0.001)")
    assert r["seeds"] == 1 and r["pairs"] == 1 and math.isnan(r["d_gap_acc_lo"]) and math.isnan(r["p_gap_acc"])
    md = formats.markdown(t)
    assert "(1 pair)" in md
    assert "| — |" in md  # the p cell


def test_diverged_members_are_counted_and_only_valid_pairs_averaged(tmp_path):
    # seed 0's regularized member diverged (null metrics), seed 1's baseline diverged: of two seeds trained per
    # arm, one valid pair remains (seed 2), whose Δ is shown alone, marked, with no interval and no p
    regs = {"l2": {"strength": 0.001}}
    members = [("baseline", s, {}, metrics(*BASE[s])) for s in range(3)]
    members += [("l2", s, regs, metrics(*L2[s])) for s in range(3)]
    write(tmp_path, members, diverged=(1, 3))
    t = build([tmp_path])
    b, r = row(t, "baseline"), row(t, "l2(strength=0.001)")
    assert (b["seeds"], b["diverged"], r["seeds"], r["diverged"], r["pairs"]) == (3, 1, 3, 1, 1)
    assert r["train_acc"] == pytest.approx((L2[1][0] + L2[2][0]) / 2)  # the kept members' mean
    gap = lambda a: a[0] - a[1]  # noqa: E731
    assert r["d_gap_acc"] == pytest.approx(gap(L2[2]) - gap(BASE[2]))
    assert math.isnan(r["d_gap_acc_lo"]) and math.isnan(r["p_gap_acc"])
    md = formats.markdown(t)
    header = md.splitlines()[0]
    assert "| seeds | left out | pairs |" in header
    line = next(x for x in md.splitlines() if "l2(strength=0.001)" in x)
    assert "| 3 | 1 diverged | 1 |" in line and f"{gap(L2[2]) - gap(BASE[2]):+.3f} (1 pair)" in line
    back = pd.read_csv(__import__("io").StringIO(formats.csv(t)))
    assert back[["seeds", "diverged", "unstable", "pairs"]].to_numpy().tolist() == [[3, 1, 0, 0], [3, 1, 0, 1]]
    js = json.loads(formats.json(t))
    assert (js[1]["seeds"], js[1]["diverged"], js[1]["unstable"], js[1]["pairs"]) == (3, 1, 0, 1)


def test_no_valid_pair_is_not_no_baseline(tmp_path):
    write(
        tmp_path,
        [("baseline", 0, {}, metrics(*BASE[0])), ("l2", 0, {"l2": {"strength": 0.001}}, metrics(*L2[0]))],
        diverged=(0,),
    )
    t = build([tmp_path])
    assert row(t, "l2(strength=0.001)")["pairs"] == 0
    assert "no valid pair" in formats.markdown(t) and "no baseline" not in formats.markdown(t)


def test_a_blown_up_member_at_chance_is_unstable_and_left_out(tmp_path):
    # lr=10 leaves members with finite losses in the thousands at 10% accuracy: not numbers to average
    blown = metrics(0.11, 0.10, 0.09) | {"train_loss": 2300.0, "val_loss": 3900.0, "test_loss": 1900.0}
    regs = {"l2": {"strength": 0.001}}
    write(
        tmp_path,
        [
            ("baseline", 0, {}, metrics(*BASE[0])),
            ("baseline", 1, {}, metrics(*BASE[1])),
            ("l2", 0, regs, blown),
            ("l2", 1, regs, metrics(*L2[1])),
        ],
        classes=10,
    )
    t = build([tmp_path])
    r = row(t, "l2(strength=0.001)")
    assert (r["seeds"], r["diverged"], r["unstable"], r["pairs"]) == (2, 0, 1, 1)
    assert r["train_loss"] == pytest.approx(1 - L2[1][0]) and r["train_acc"] == pytest.approx(L2[1][0])
    assert "1 unstable" in formats.markdown(t)


@pytest.mark.parametrize(
    "loss,acc,classes,expected",
    [
        (4.7, 0.10, 10, True),  # 2·ln(10) = 4.61
        (4.5, 0.10, 10, False),  # bad, but not blown up past twice the initial loss
        (50.0, 0.19, 10, True),  # chance + 10% of the way to perfect: 0.19
        (50.0, 0.25, 10, False),  # it learned something
        (50.0, 0.55, 2, True),
        (50.0, 0.10, None, False),  # a record that does not say how many classes: not judged
    ],
)
def test_the_unstable_rule(loss, acc, classes, expected):
    from regbench.reporting.frame import unstable

    assert unstable({"train_loss": loss, "train_acc": acc}, classes) is expected


def test_markdown_renders_as_a_table(sweep):
    md = formats.markdown(build([sweep]))
    lines = md.splitlines()
    header, sep, *body = lines[: lines.index("")]
    assert header.startswith("| dataset | model | regularizers | seeds |")
    cols = header.count("|") - 1
    assert sep == "|" + "|".join(["---"] * cols) + "|"
    assert len(body) == 4 and all(b.count("|") - b.count("\\|") == cols + 1 for b in body)
    assert "Δgap [95% CI]" in header and "p(Δgap)" in header


def test_csv_json_latex_carry_the_same_numbers(sweep):
    t = build([sweep])
    back = pd.read_csv(__import__("io").StringIO(formats.csv(t)))
    assert np.allclose(back["d_gap_acc"].to_numpy(), t["d_gap_acc"].to_numpy(), equal_nan=True)
    js = json.loads(formats.json(t))
    assert js[3]["setting"] == "l2(strength=0.001)" and js[3]["d_gap_acc"] == pytest.approx(t["d_gap_acc"][3])
    assert js[0]["d_gap_acc"] is None  # the baseline has no delta: null, not NaN
    tex = formats.latex(t)
    assert tex.startswith("\\begin{tabular}") and tex.count("\\\\") == 5 and "$\\Delta$gap" in tex


def test_sort_and_filters(sweep):
    t = build([sweep], sort="d_gap_acc")
    reg = t["d_gap_acc"].dropna().to_numpy()
    assert (np.diff(reg) >= 0).all() and t["arm"].iloc[-1] == "baseline"  # no delta sorts last
    assert build([sweep], sort="d_gap_acc", descending=True)["d_gap_acc"].iloc[0] == reg.max()
    with pytest.raises(UsageError, match="--sort bogus: unknown column; allowed: dataset, model"):
        build([sweep], sort="bogus")
    with pytest.raises(RunError, match="no records match dataset=digits"):
        build([sweep], datasets=["digits"])
    assert set(build([sweep], models=["mlp"], regularizers=["dropout", "l1"])["arm"]) == {"baseline", "dropout", "l1"}


def test_corrupt_records_are_skipped_with_their_path(sweep, capsys):
    (sweep / "3").mkdir()
    (sweep / "3" / "result.json").write_text('{"format": "regbench.result/1", "memb')
    (sweep / "4").mkdir()
    (sweep / "4" / "result.json").write_text(json.dumps({"format": "regbench.result/1", "members": [{"arm": 1}]}))
    t = build([sweep])
    assert len(t) == 4
    err = capsys.readouterr().err
    assert f"regbench: warning: skipped {sweep / '3' / 'result.json'}: Unterminated string" in err
    assert f"regbench: warning: skipped {sweep / '4' / 'result.json'}: missing field 'job'" in err


def test_a_member_pairs_with_the_baseline_of_its_own_record(tmp_path):
    # Same context, baselines a hair apart (a member in another population agrees only within float tolerance).
    nudged = [(b[0] + 1e-3, b[1], b[2]) for b in BASE]
    job(tmp_path / "a", "l2", {"strength": 0.001}, BASE, L2)
    job(tmp_path / "b", "dropout", {"p": 0.5}, nudged, DROP)
    d = row(build([tmp_path]), "dropout(p=0.5)")
    assert d["d_gap_acc"] == pytest.approx(np.mean([(r[0] - r[1]) - (b[0] - b[1]) for r, b in zip(DROP, nudged)]))


def test_a_real_run_at_lr_10_is_flagged_unstable(compose_cfg):
    from regbench.experiment import run_experiment
    from regbench.reporting.frame import members_frame

    from .conftest import TINY

    record = run_experiment(compose_cfg(*TINY, "trainer.lr=10", "trainer.epochs=3", "regularizers=[l2]"))
    assert record["job"]["classes"] == 10
    finals = [m["final"] for m in record["members"]]
    assert all(not m["diverged"] for m in record["members"])  # finite numbers: nothing else would catch them
    assert all(f["train_loss"] > 2 * math.log(10) and f["train_acc"] < 0.19 for f in finals)
    df = members_frame(record)
    assert df["unstable"].all() and df["train_acc"].isna().all()
    t = stats.table(df)
    assert t["unstable"].tolist() == [2, 2] and t["pairs"].tolist() == [0, 0]
    # the table the run itself ends with says so too
    from rich.console import Console

    from regbench.reporting.summary import render, summarize

    console = Console(record=True, width=120, file=__import__("io").StringIO())
    render(summarize(df), console=console)
    line = next(x for x in console.export_text().splitlines() if "unstable (left out)" in x)
    assert line.replace("│", " ").split()[-2:] == ["of", "2"] and line.count("2 of 2") == 2


def test_a_forced_rerun_lands_in_the_same_group_as_a_resumed_run(tmp_path):
    # `regbench run --force` sets trainer.resume=false; that and the thread count change no number
    job(tmp_path / "a", "l2", {"strength": 0.001}, BASE, L2)
    path = write(tmp_path / "b", [("dropout", 0, {"dropout": {"p": 0.5}}, metrics(*DROP[0]))])
    record = json.loads(path.read_text())
    record["provenance"]["config"]["trainer"] |= {"resume": False, "threads": 2, "checkpoint_every": 5}
    path.write_text(json.dumps(record))
    t = build([tmp_path])
    assert len(set(t["config"])) == 1
    assert row(t, "dropout(p=0.5)")["pairs"] == 1


def test_csv_and_parquet_flatten_nested_columns_and_json_nests_them(sweep, tmp_path):
    """No JSON string inside a CSV cell: the config and regularizers become one column per leaf, the same in
    Parquet; JSON output carries them as objects."""
    t = build([sweep])
    back = pd.read_csv(__import__("io").StringIO(formats.csv(t)))
    assert "regularizers" not in back.columns and "context" not in back.columns
    assert not back.astype(str).apply(lambda col: col.str.startswith("{")).any().any()
    l2 = back[back["setting"] == "l2(strength=0.001)"].iloc[0]
    assert l2["regularizers.l2.strength"] == pytest.approx(1e-3)
    assert np.isnan(back[back["setting"] == "baseline"].iloc[0]["regularizers.l2.strength"])
    assert l2["config.model.name"] == "mlp" and l2["config.dataset.name"] == "mnist1d"
    js = json.loads(formats.json(t))
    assert js[3]["regularizers"] == {"l2": {"strength": 0.001}} and js[3]["context"]["model"]["name"] == "mlp"
    path = tmp_path / "gap.parquet"
    path.write_bytes(formats.parquet(t))
    pq = pd.read_parquet(path)
    assert list(pq.columns) == list(back.columns)
    assert np.allclose(pq["d_gap_acc"], back["d_gap_acc"], equal_nan=True)


def test_parquet_goes_to_a_file_and_says_when_pyarrow_is_missing(sweep, tmp_path, monkeypatch):
    from regbench.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["report", str(sweep), "--format", "parquet"])
    assert r.exit_code == 2 and "--format parquet: a binary file; give one with --output" in r.stderr
    out = tmp_path / "gap.parquet"
    r = runner.invoke(app, ["report", str(sweep), "--format", "parquet", "--output", str(out)])
    assert r.exit_code == 0, r.stderr
    assert len(pd.read_parquet(out)) == len(build([sweep]))
    monkeypatch.setattr(formats, "has_pyarrow", lambda: False)
    out.unlink()
    r = runner.invoke(app, ["report", str(sweep), "--format", "parquet", "--output", str(out)])
    assert (r.exit_code, r.stderr.count("\n")) == (2, 1), (r.exception, r.stderr)
    assert "pip install 'regbench[parquet]'" in r.stderr
    assert not out.exists()


def test_a_regularizer_without_parameters_is_a_true_column_not_an_empty_object(tmp_path):
    job(tmp_path / "bn", "batch_norm", {}, BASE, L2)
    back = pd.read_csv(__import__("io").StringIO(formats.csv(build([tmp_path])))).set_index("setting")
    used = back["regularizers.batch_norm"]
    assert used["batch_norm"] == True and pd.isna(used["baseline"])  # noqa: E712
    assert not back.astype(str).apply(lambda col: col.str.startswith("{")).any().any()
