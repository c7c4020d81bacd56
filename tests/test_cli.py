"""The commands a user types, run for real in a subprocess with tiny budgets."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from regbench import __version__, regularizers

from .conftest import TINY, run_cli

KNOWN_REGS = ", ".join(sorted(regularizers.REGULARIZERS))


def test_run_trains_records_and_prints_the_table(tmp_path):
    r = run_cli("run", *TINY, "trainer.seeds=3", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for label in ("baseline", "Δ l2+dropout", "train acc", "gap: train − val acc"):
        assert label in r.stdout
    (record_path,) = tmp_path.glob("results/jobs/*/result.json")
    record = json.loads(record_path.read_text())
    assert len(record["members"]) == 6  # {baseline, l2+dropout} x 3 seeds, one process
    assert (record_path.parent / "history.csv").is_file()
    assert (record_path.parent / ".hydra" / "config.yaml").is_file()


def test_multirun_writes_one_folder_per_job(tmp_path):
    r = run_cli("run", "-m", "regularizers=[l1],[dropout]", *TINY, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    found = sorted(tmp_path.glob("results/jobs/*/result.json"))
    assert len(found) == 2
    arms = {json.loads(p.read_text())["members"][-1]["arm"] for p in found}
    assert arms == {"l1", "dropout"}
    (index,) = tmp_path.glob("results/sweeps/*/*/jobs.jsonl")  # the sweep's folder lists its jobs' folders
    jobs = [json.loads(line) for line in index.read_text().splitlines()]
    assert sorted((index.parent / j["dir"] / "result.json").resolve() for j in jobs) == [p.resolve() for p in found]


@pytest.mark.parametrize(
    "args,message",
    [
        (["regularizers=[l2,foo]"], f"regularizers: unknown name 'foo'; known: {KNOWN_REGS}"),
        (
            ["dataset=imagenet"],
            "dataset: unknown name 'imagenet'; known: blobs, cifar10, csv, digits, fashion_mnist, mnist, mnist1d, "
            "moons, npz",
        ),
        (["model=transformer"], "model: unknown name 'transformer'; known: cnn, mlp, resnet, torch, vgg"),
        (["-m", "regularizers=[l1],[bogus]"], f"regularizers: unknown name 'bogus'; known: {KNOWN_REGS}"),
        (["regularizers.dropout.p=1.5"], "regularizers.dropout.p=1.5: must be in [0.0, 1.0)"),
        (["-m", "regularizers.dropout.p=0.1,1.5"], "regularizers.dropout.p=1.5: must be in [0.0, 1.0)"),
        (["trainer.lrr=0.1"], "trainer.lrr: unknown key; allowed: optimizer, lr, momentum"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    r = run_cli("run", *args, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith(f"regbench: error: {message}")
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "results").exists()


def test_cfg_job_prints_the_composed_config(tmp_path):
    r = run_cli("run", "--cfg", "job", "model=cnn", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "channels: 25" in r.stdout and "regularizers:" in r.stdout
    assert not (tmp_path / "results").exists()


def test_list_and_version(tmp_path):
    r = run_cli("list", cwd=tmp_path)
    assert r.returncode == 0
    for name in ("mnist1d", "digits", "mlp", "cnn", "[0.0, 1.0)"):
        assert name in r.stdout
    from regbench import regularizers
    from regbench.schema import describe

    for name, cls in regularizers.REGULARIZERS.items():  # every regularizer, every parameter, its range
        assert name in r.stdout
        for pname, _, allowed, _ in describe(cls.Config):
            assert pname in r.stdout
            for part in allowed.replace("one of ", "").split(", "):
                assert part in r.stdout
    v = run_cli("--version", cwd=tmp_path)
    assert v.stdout.strip() == f"regbench {__version__}"


def test_list_narrows_to_a_group_or_an_option_and_refuses_unknown_ones(tmp_path):
    from rich.console import Console

    from regbench.listing import show

    def listed(what):
        console = Console(record=True, width=80, file=open(os.devnull, "w"))  # noqa: SIM115
        show(what, console)
        return console.export_text()

    only_dropout = listed("dropout")
    assert "input_p" in only_dropout and "coefficient of sum" not in only_dropout  # no l1/l2 rows
    datasets = listed("dataset").split("Choose with")[0]  # the closing example names regularizers
    # fields every dataset shares are listed once, not under each dataset
    assert datasets.count("val_fraction") == 1 and "mnist1d" in datasets and "dropout" not in datasets
    r = run_cli("list", "transformers", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith("regbench: error: list transformers: unknown group or option; known: ")


def test_help_and_list_print_bracketed_examples_as_typed(tmp_path):
    """Rich markup would read [l2,dropout] as a style tag and print 'regularizers='."""
    from typer.testing import CliRunner

    from regbench.cli import app

    helped = CliRunner().invoke(app, ["run", "--help"]).output
    for example in (
        "'regularizers=[dropout]'",
        "'regularizers=[l2,dropout]' regularizers.dropout.p=0.3",
        "-m 'regularizers=[l1],[l2],[dropout]'",
    ):
        assert example in helped
    listed = CliRunner().invoke(app, ["list", "trainer"], env={"COLUMNS": "200"}).output
    assert "'regularizers=[l2,dropout]'" in listed


def test_print_only_commands_import_neither_torch_nor_the_engine(tmp_path):
    code = """
import sys
from typer.testing import CliRunner
from regbench.cli import app
for args in (["run", "--cfg", "job"], ["run", "--help"], ["run", "--info", "config"], ["run", "-sc", "install=bash"]):
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, (args, r.output)
heavy = [m for m in ("torch", "pandas", "regbench.experiment", "regbench.train.engine") if m in sys.modules]
print("heavy:", heavy)
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "heavy: []" in r.stdout
    assert not (tmp_path / "results").exists()


def _bash_complete(script: str, line: str, tmp_path) -> list[str]:
    """COMPREPLY of the function `script` registers, for `line` typed as bash would hand it over."""
    (tmp_path / "completion.sh").write_text(script)
    words = line.split() + ([""] if line.endswith(" ") else [])
    driver = f"""
source completion.sh
COMP_LINE={shlex.quote(line)}
COMP_POINT=${{#COMP_LINE}}
COMP_WORDS=({" ".join(shlex.quote(w) for w in words)})
COMP_CWORD={len(words) - 1}
fn=$(complete -p regbench | sed -E 's/.* -F ([^ ]+) .*/\\1/')
$fn regbench "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    r = subprocess.run(["bash", "-c", driver], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_hydra_shell_completion_completes_run_overrides_in_bash(tmp_path):
    """The script of `regbench run -sc install=bash` calls `regbench -sc query=bash`, which answers for `run`."""
    exe = Path(sys.executable).parent / "regbench"
    script = subprocess.run([exe, "run", "-sc", "install=bash"], capture_output=True, text=True, cwd=tmp_path).stdout
    assert "complete -o nospace -o default -F hydra_bash_completion regbench\n" in script
    top = subprocess.run([exe, "-sc", "install=bash"], capture_output=True, text=True, cwd=tmp_path).stdout
    assert top == script  # what `regbench -sc` answers to is the same script's
    assert "dataset=mnist1d" in _bash_complete(script, "regbench run dataset=mn", tmp_path)
    assert "regularizers=" in _bash_complete(script, "regbench run regul", tmp_path)
    assert _bash_complete(script, "regbench ru", tmp_path) == ["run"]


def test_typer_shell_completion_is_installed_and_completes_commands(tmp_path):
    exe = Path(sys.executable).parent / "regbench"
    # typer detects the shell from the parent process: a bash that stays (`; true`: no exec), not make's sh
    r = subprocess.run(
        ["bash", "-c", f"{shlex.quote(str(exe))} --show-completion; true"], capture_output=True, text=True, cwd=tmp_path
    )
    script = r.stdout
    assert "_regbench_completion" in script, (r.returncode, r.stderr)
    assert _bash_complete(script, "regbench ea", tmp_path) == ["early-stop"]
