"""`regbench report` and `regbench plot` as a user types them: after a real multirun (a subprocess), and on bad
input (in process, through typer's runner: the same command function, without a second interpreter start)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from regbench.cli import app

from .conftest import TINY, run_cli
from .report_records import job

BASE = [(0.90, 0.60, 0.62), (0.95, 0.58, 0.61)]


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def test_multirun_then_report_and_plot(tmp_path, monkeypatch):
    r = run_cli("run", "-m", "regularizers=[l1],[dropout]", *TINY, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # The sweep callback prints one table over both jobs when the multirun ends.
    sweep_table = r.stdout[r.stdout.index("sweep: results/sweeps/") :]
    assert "paired against the baseline" in sweep_table
    assert "l1(strength=0.0001)" in sweep_table and "dropout(p=0.2" in sweep_table  # long labels fold

    rich = run_cli("report", "results/", cwd=tmp_path)
    assert rich.returncode == 0, rich.stderr
    assert "Δgap" in rich.stdout and "l1(strength=0.0001)" in rich.stdout and "dropout(p=0.2" in rich.stdout

    monkeypatch.chdir(tmp_path)
    rep = cli("report", "results/", "--format", "json")
    assert rep.exit_code == 0, rep.stderr
    rows = {row["setting"]: row for row in json.loads(rep.stdout)}
    assert set(rows) == {"baseline", "l1(strength=0.0001)", "dropout(p=0.2,input_p=0.0)"}
    assert rows["baseline"]["seeds"] == 2  # both jobs carry the same two baselines
    for name in ("l1(strength=0.0001)", "dropout(p=0.2,input_p=0.0)"):
        row = rows[name]
        assert row["pairs"] == 2 and row["seeds"] == 2
        assert row["d_gap_acc"] == row["d_gap_acc"]  # not NaN: paired with a baseline
        assert row["d_gap_acc_lo"] <= row["d_gap_acc"] <= row["d_gap_acc_hi"]
        assert row["gap_acc"] - rows["baseline"]["gap_acc"] == pytest.approx(row["d_gap_acc"])

    plot = cli("plot", "results/", "--out", "figs")
    assert plot.exit_code == 0, plot.stderr
    assert len(list((tmp_path / "figs").glob("curves-*.png"))) == 2 and (tmp_path / "figs" / "gap-delta.png").is_file()


def test_corrupt_record_is_skipped_by_name_and_output_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job(tmp_path / "sweep" / "0", "l2", {"strength": 0.001}, BASE, BASE)
    bad = tmp_path / "sweep" / "1" / "result.json"
    bad.parent.mkdir()
    bad.write_text('{"format": "regbench.result/1", "mem')
    r = cli("report", "sweep", "--format", "markdown", "--output", "out/gap.md")
    assert r.exit_code == 0, r.stderr
    reason = "Unterminated string starting at: line 1 column 33 (char 32)"
    assert r.stderr == f"regbench: warning: skipped {bad}: {reason}\n"
    assert r.stdout == "wrote out/gap.md\n"
    text = (tmp_path / "out" / "gap.md").read_text()
    assert text.startswith("| dataset | model | regularizers |") and "l2(strength=0.001)" in text
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_empty_folder_missing_path_and_bad_options(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    r = cli("report", "empty")
    assert (r.exit_code, r.stderr) == (1, "regbench: error: no regbench records (result.json) found under empty\n")
    r = cli("report", "nowhere")
    assert (r.exit_code, r.stderr) == (2, "regbench: error: nowhere: no such file or directory\n")
    r = cli("plot", "nowhere")
    assert (r.exit_code, r.stderr) == (2, "regbench: error: nowhere: no such file or directory\n")
    job(tmp_path / "run", "l2", {"strength": 0.001}, BASE, BASE)
    r = cli("report", "run", "--format", "html")
    assert (r.exit_code, r.stderr) == (
        2,
        "regbench: error: --format html: unknown format; allowed: rich, markdown, csv, json, latex, parquet\n",
    )


def test_output_and_plots_paths_that_cannot_be_written_are_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job(tmp_path / "run", "l2", {"strength": 0.001}, BASE, BASE)
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "adir").mkdir()
    r = cli("report", "run", "--output", "adir")
    assert (r.exit_code, r.stderr) == (2, "regbench: error: --output adir: a folder; give a file path for the table\n")
    # tests run as root, whom permissions do not stop: a file where a folder must be is the OSError they can meet
    r = cli("report", "run", "--output", "afile/gap.md")
    msg = "regbench: error: --output afile/gap.md: cannot write there: afile is a file, not a folder\n"
    assert (r.exit_code, r.stderr) == (1, msg)
    r = cli("report", "run", "--plots", "afile", "--output", "gap.md")
    msg = "regbench: error: --plots afile: a file, not a folder; give a folder for the PNG files\n"
    assert (r.exit_code, r.stderr) == (2, msg)
    r = cli("report", "run", "--plots", "afile/figs", "--output", "gap.md")
    msg = "regbench: error: --plots afile/figs: cannot write there: afile is a file, not a folder\n"
    assert (r.exit_code, r.stderr) == (1, msg)
    r = cli("plot", "run", "--out", "afile")
    assert r.exit_code == 2 and r.stderr.startswith("regbench: error: --out afile: a file, not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile", "run"]  # nothing half-written
    assert not list((tmp_path / "adir").iterdir())


def test_an_unwritable_output_folder_is_one_line(tmp_path, monkeypatch):
    import os

    monkeypatch.chdir(tmp_path)
    job(tmp_path / "run", "l2", {"strength": 0.001}, BASE, BASE)
    (tmp_path / "ro").mkdir()

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", denied)  # what a read-only folder does to anyone but root
    r = cli("report", "run", "--output", "ro/gap.md")
    assert (r.exit_code, r.stderr) == (
        1,
        "regbench: error: --output ro/gap.md: cannot write there: Permission denied\n",
    )
    assert not list((tmp_path / "ro").iterdir())  # the temporary file is gone too
