"""The Python API: docs/api.md's example runs as written, and run() keeps the command's rules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import regbench
from regbench import api
from regbench.errors import UsageError

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def test_the_documented_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (code,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    exec(compile(code, str(DOC), "exec"), {})
    out = capsys.readouterr().out
    assert out.count("digits-mlp-l2-") == 2  # two runs, each printing its run id
    assert "l2(strength=0.0001)" in out and "l2(strength=0.001)" in out
    assert len(list((tmp_path / "results" / "jobs").iterdir())) == 2


def test_run_saves_skips_a_complete_record_and_report_reads_it(tmp_path, monkeypatch):
    from regbench import report, run

    args = ("dataset=digits", "regularizers=[l2]", "trainer.epochs=1", "trainer.seeds=1", "trainer.progress=off")
    first = run(*args, results=tmp_path)
    assert (tmp_path / "jobs" / first["run_id"] / "result.json").is_file()
    assert [m["arm"] for m in first["members"]] == ["baseline", "l2"]
    monkeypatch.setattr("regbench.experiment.run_experiment", lambda *a, **k: pytest.fail("trained again"))
    again = run(*args, results=tmp_path)  # complete: read back, not retrained
    assert again["run_id"] == first["run_id"] and again["members"] == first["members"]
    t = report(tmp_path)
    assert list(t["setting"]) == ["baseline", "l2(strength=0.0001)"]


def test_run_without_results_writes_nothing_and_bad_input_raises_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    record = regbench.run("dataset=digits", "trainer.epochs=1", "trainer.seeds=1", "trainer.progress=off", results=None)
    assert record["job"]["dataset"] == "digits" and not (tmp_path / "results").exists()
    with pytest.raises(UsageError, match=r"^regularizers.dropout.p=1.5: .*") as err:
        api.run("regularizers=[dropout]", "regularizers.dropout.p=1.5", results=None)
    assert "\n" not in str(err.value)
