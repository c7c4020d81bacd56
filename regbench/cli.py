"""The `regbench` command. Each command is a thin shell over the core; `run` hands its arguments to Hydra."""

from __future__ import annotations

import io
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import regbench
from regbench.errors import RegbenchError, RunError, UsageError

app = typer.Typer(
    help="Compare regularizers by the train/validation gap they leave, against a paired unregularized baseline.",
    no_args_is_help=True,
    rich_markup_mode="rich",  # help texts are Rich markup: a literal [ in an example is written \[
    pretty_exceptions_enable=False,
)
COMMANDS = ("run", "list", "report", "plot", "early-stop")


def _version(value: bool):
    if value:
        print(f"regbench {regbench.__version__}")
        raise typer.Exit()


def _hydra_completion(value: str | None):
    """Answer the script of `regbench run -sc install=bash`, which calls `regbench -sc query=bash` with the line
    typed so far in COMP_LINE: the command names after `regbench`, Hydra's completion of the overrides after `run`."""
    if not value:
        return
    line = os.environ.get("COMP_LINE", "")
    words = line.split()
    if not value.startswith("query="):  # install=bash, uninstall=bash: the same script as `regbench run -sc ...`
        from regbench import hydra_app

        sys.argv = ["regbench", "--shell-completion", value]
        hydra_app.main()
    elif len(words) > 1 and words[1] == "run" and (len(words) > 2 or line.endswith(" ")):
        # Hydra strips the program's name from the line; `run` goes too, so that Hydra sees only the overrides.
        os.environ["COMP_LINE"] = re.sub(r"^(\s*\S+)\s+run\b", r"\1", line, count=1)
        from regbench import hydra_app

        sys.argv = ["regbench", "--shell-completion", value]
        hydra_app.main()
    elif len(words) <= 2 and not (len(words) == 2 and line.endswith(" ")):
        typed = words[1] if len(words) == 2 else ""
        print(" ".join(c for c in COMMANDS if c.startswith(typed)))
    raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks (as does HYDRA_FULL_ERROR=1)."),
    shell_completion: str = typer.Option(
        None, "--shell-completion", "-sc", callback=_hydra_completion, is_eager=True, hidden=True
    ),
):
    if debug:
        os.environ["REGBENCH_DEBUG"] = "1"  # read by the Hydra shell too, which runs after this callback


def _fail(err: RegbenchError):
    if os.environ.get("REGBENCH_DEBUG") == "1" or os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise err
    print(f"regbench: error: {err}", file=sys.stderr)
    raise typer.Exit(err.exit_code)


def _outcomes(path: Path) -> list[dict]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:  # a job killed mid-line: its folder still tells the truth
            continue
    return out


def _summarise(outcomes: list[dict]) -> int:
    """One line of counts, one line per failed job; the exit code (1 when any job failed)."""
    counts = {s: sum(o["status"] == s for o in outcomes) for s in ("trained", "skipped", "failed")}
    if len(outcomes) > 1 or counts["skipped"] or counts["failed"]:
        done = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        print(f"regbench: {len(outcomes)} job{'s' * (len(outcomes) != 1)}: {done}", file=sys.stderr)
    for o in outcomes:
        if o["status"] == "failed":
            print(f"regbench: failed: {o['dir']}: {o['error']}", file=sys.stderr)
    return 1 if counts["failed"] else 0


RUN_EXAMPLES = """Examples:
  regbench run                                         # the default run
  regbench run dataset=digits model=cnn 'regularizers=[dropout]'
  regbench run 'regularizers=[l2,dropout]' regularizers.dropout.p=0.3
  regbench run 'regularizers=[l1]' trainer.seeds=5 trainer.epochs=50
  regbench run -m 'regularizers=[l1],[l2],[dropout]'   # one job folder each
  regbench run -m experiment=strengths                 # a preset's sweep
  regbench run --cfg job                               # the composed config
"""
RUN_HELP = """Train the baseline and the regularized model over several seeds; print the gap table.

OVERRIDES are Hydra overrides, and Hydra's flags pass through (-m/--multirun, --cfg job, ...).
An experiment preset (experiment=singles, experiment=strengths) is a sweep: it runs with -m.

\b
""" + escape(RUN_EXAMPLES)  # Rich markup would take [l2, dropout] for a style tag and drop it


@app.command(
    help=RUN_HELP,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def run(
    ctx: typer.Context,
    overrides: list[str] = typer.Argument(None, help="Hydra overrides and flags."),
    force: bool = typer.Option(False, "--force", help="Re-run jobs whose complete records exist (resume=false)."),
):
    from regbench import preflight as checks

    args = list(overrides or []) + list(ctx.args) + (["trainer.resume=false"] if force else [])
    try:
        n_jobs = checks.check(args)
    except RegbenchError as err:
        _fail(err)
    from regbench import hydra_app, job

    # Hydra's -sc install=bash names the program in its `complete` line from argv[0]: that must be `regbench` alone.
    completion = any(a.split("=")[0] in ("-sc", "--shell-completion") for a in args)
    sys.argv = ["regbench" if completion else "regbench run", *args]
    if not n_jobs:  # --cfg, --help, ...: Hydra prints and no job runs
        hydra_app.main()
        return
    fd, status = tempfile.mkstemp(prefix="regbench-status-", suffix=".jsonl")
    os.close(fd)
    os.environ[job.STATUS_ENV] = status
    try:
        hydra_app.main()
        code = _summarise(_outcomes(Path(status)))
    finally:
        os.environ.pop(job.STATUS_ENV, None)
        Path(status).unlink(missing_ok=True)
    if code:
        raise typer.Exit(code)


@app.command("list")
def list_options(
    what: str = typer.Argument(None, help="Only this group (dataset, model, regularizers, trainer) or option."),
):
    """Show every dataset, model and regularizer with its parameters, defaults and allowed ranges.

    \b
    Examples:
      regbench list
      regbench list regularizers
      regbench list dropout
    """
    from regbench.listing import show

    try:
        show(what)
    except RegbenchError as err:
        _fail(err)


@app.command("early-stop")
def early_stop(
    folder: str = typer.Argument(..., help="A run folder holding history.csv (or the history.csv itself)."),
    settings: list[str] = typer.Argument(
        None, help="early_stopping settings as key=value, e.g. criterion=gl; by default the job's own settings"
    ),
):
    """Replay early stopping on a recorded history, without training: when each member would stop, its best epoch.

    The settings are the job's own early_stopping settings (from the result.json beside history.csv), or the
    defaults when the job used none; those given here override them.

    \b
    Examples:
      regbench early-stop results/jobs/mnist1d-mlp-early_stopping-1a2b3c4d5e6f
      regbench early-stop results/jobs/mnist1d-mlp-early_stopping-1a2b3c4d5e6f criterion=gl gl_alpha=2 monitor=val_acc
    """
    import pandas as pd

    from regbench.regularizers.early_stopping import EarlyStoppingConfig, describe, load_history, replay
    from regbench.results.records import HISTORY
    from regbench.schema import validate

    try:
        path = Path(folder)
        path = path / HISTORY if path.is_dir() else path
        if not path.is_file():
            raise UsageError(f"{folder}: no {HISTORY} there")
        pairs = {}
        for item in settings or []:
            key, sep, value = item.partition("=")
            if not sep:
                raise UsageError(f"{item}: expected key=value")
            pairs[key] = yaml_value(value)
        own = _job_early_stopping(path.parent)
        cfg = validate({**own, **pairs}, EarlyStoppingConfig, "early_stopping")
        out = replay(load_history(path), cfg)
    except RegbenchError as err:
        _fail(err)
    source = {
        (True, False): "the job's settings",
        (True, True): "the job's settings, overridden",
        (False, True): "given settings, defaults otherwise",
        (False, False): "default settings: the job used no early stopping",
    }[bool(own), bool(pairs)]
    console = Console()
    console.print(str(path), style="dim", soft_wrap=True)
    # the settings on a line of their own: a table's title wraps to the table's width
    console.print(f"early stopping by {describe(cfg)} ({source})", soft_wrap=True)
    table = Table()
    for col in ("member", "arm", "seed", "stop epoch", "best epoch", "val acc", "test acc", "gap acc"):
        table.add_column(col, justify="right" if col != "arm" else "left")
    for r in out.itertuples():
        stop = "—" if pd.isna(r.stop_epoch) else str(int(r.stop_epoch))
        cells = [r.member, r.arm, r.seed, stop, r.best_epoch]
        table.add_row(*map(str, cells), f"{r.val_acc:.3f}", f"{r.test_acc:.3f}", f"{r.gap_acc:.3f}")
    console.print(table)
    console.print("metrics at each member's best epoch before its stop (— : no stop within the budget)", style="dim")


def _job_early_stopping(folder: Path) -> dict:
    """The early_stopping settings the job in `folder` ran with ({} without a record or early stopping)."""
    from regbench.results import records

    path = folder / records.RESULT
    if not path.is_file():
        return {}
    try:
        record = records.load(path)
    except (OSError, ValueError) as err:
        print(f"regbench: warning: {path}: unreadable ({err}); its job's settings are unknown", file=sys.stderr)
        return {}
    config = ((record.get("provenance") or {}).get("config") or {}).get("regularizers") or {}
    job = (record.get("job") or {}).get("regularizers") or {}
    return dict(config.get("early_stopping") or job.get("early_stopping") or {})


def yaml_value(text: str):
    """A command-line value typed as YAML types it (2 -> int, 0.5 -> float, true -> bool), as Hydra would."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


REPORT_HELP = """One gap table over every record (result.json) below PATHS: runs, sweeps, nested sweeps.

Groups are dataset x model x regularizers with their settings (and trainer/data settings when they differ).
Each regularized member is paired with the baseline of the same seed; Δgap, Δval and Δtest are shown as mean with
a 95% t-interval over seeds and a paired t-test p-value, Holm-corrected over the table's comparisons.

\b
Examples:
  regbench report results/
  regbench report results/sweeps/2026-11-24 --format markdown --output gap.md
  regbench report results/ --regularizer dropout --sort d_gap_acc --plots figures/
"""

Paths = typer.Argument(..., help="Folders (searched recursively) or result.json files.", show_default=False)
Datasets = typer.Option([], "--dataset", help="Only this dataset (repeatable).")
Models = typer.Option([], "--model", help="Only this model (repeatable).")
Regs = typer.Option([], "--regularizer", help="Only groups using this regularizer, with their baselines (repeatable).")


def _table(paths, dataset, model, regularizer, sort=None, descending=False, tuned=False, select_seeds=None):
    from regbench.reporting.build import build
    from regbench.reporting.collect import load_frame

    try:
        frame = load_frame(paths)
        return frame, build(paths, dataset, model, regularizer, sort, descending, frame, tuned, select_seeds)
    except RegbenchError as err:
        _fail(err)


def _unwritable(option: str, path: Path, err: OSError) -> RunError:
    """One line for a path the report cannot write, naming the option and why (a file in the way, permissions)."""
    blocker = next((p for p in path.parents if p.exists()), None)
    why = f"{blocker} is a file, not a folder" if blocker is not None and not blocker.is_dir() else err.strerror
    return RunError(f"{option} {path}: cannot write there: {why or err}")


def _check_folder(option: str, folder: str) -> None:
    """A plots folder that is a file is a usage error, found before anything is read or written."""
    if Path(folder).exists() and not Path(folder).is_dir():
        _fail(UsageError(f"{option} {folder}: a file, not a folder; give a folder for the PNG files"))


def _make_folder(option: str, folder: str) -> None:
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        _fail(_unwritable(option, Path(folder), err))


def _plots(table, frame, out, option: str) -> None:
    from regbench.reporting.plots import plot_all

    try:
        for path in plot_all(table, frame, out):
            print(f"wrote {path}")
    except OSError as err:
        _fail(_unwritable(option, Path(out), err))


@app.command(help=REPORT_HELP)
def report(
    paths: list[str] = Paths,
    fmt: str = typer.Option("rich", "--format", "-f", help="rich, markdown, csv, json, latex, parquet (a file)."),
    output: str = typer.Option(None, "--output", "-o", help="Write the table to this file (atomically)."),
    sort: str = typer.Option(None, "--sort", help="Sort rows by this column of the csv/json output, e.g. d_gap_acc."),
    descending: bool = typer.Option(False, "--descending", help="Sort from the largest value down."),
    dataset: list[str] = Datasets,
    model: list[str] = Models,
    regularizer: list[str] = Regs,
    plots: str = typer.Option(None, "--plots", help="Also write PNG plots into this folder."),
    tuned: bool = typer.Option(
        False, "--tuned", help="Each regularizer at its best setting on validation (experiment=tuned's sweep)."
    ),
    select_seeds: int = typer.Option(
        None, "--select-seeds", help="With --tuned: how many seeds (the first) choose; the rest report. Default: half."
    ),
    bias_variance: bool = typer.Option(
        False,
        "--bias-variance",
        help="Instead of the gap table: each group's test error split into bias and variance (needs runs with "
        "trainer.predictions=true).",
    ),
    complexity: bool = typer.Option(
        False, "--complexity", help="Instead of the gap table: weight norms, sparsity, spectral norms and margins."
    ),
):
    from regbench.atomic import atomic_write
    from regbench.reporting import formats

    if fmt not in formats.FORMATS:
        _fail(UsageError(f"--format {fmt}: unknown format; allowed: {', '.join(formats.FORMATS)}"))
    if fmt in formats.BINARY and not output:
        _fail(UsageError(f"--format {fmt}: a binary file; give one with --output, e.g. --output gap.{fmt}"))
    if output and Path(output).is_dir():
        _fail(UsageError(f"--output {output}: a folder; give a file path for the table"))
    if plots:
        _check_folder("--plots", plots)
    frame, table = _table(paths, dataset, model, regularizer, sort, descending, tuned, select_seeds)
    if bias_variance or complexity:
        view = "bias_variance" if bias_variance else "complexity"
        return _side_view(view, frame.merge(table[["dataset", "model", "context", "setting"]]), fmt, output)
    try:
        formats.require(fmt)  # a missing engine (pyarrow) is found before anything is written
    except UsageError as err:
        _fail(err)
    if plots:  # before the table is written: a plots folder that cannot be made leaves nothing behind
        _make_folder("--plots", plots)
    if output:
        text = formats.render(table, fmt) if fmt != "rich" else _rich_text(table)
        try:
            atomic_write(Path(output), text)
        except OSError as err:
            _fail(_unwritable("--output", Path(output), err))
        print(f"wrote {output}")
    elif fmt == "rich":
        formats.rich(table)
    else:
        sys.stdout.write(formats.render(table, fmt))
    if plots:
        _plots(table, frame, plots, "--plots")


TITLES = {
    "bias_variance": "bias-variance of the test error over each group's seeds (reporting/bias_variance.py)",
    "complexity": "complexity at the end of training, mean over each group's seeds (reporting/complexity.py)",
}


def _side_view(view: str, frame, fmt: str, output: str | None) -> None:
    """A table other than the gap table, over the same filtered members: --bias-variance or --complexity."""
    import importlib

    from regbench.atomic import atomic_write
    from regbench.reporting import formats

    try:
        t = importlib.import_module(f"regbench.reporting.{view}").table(frame)
        title = TITLES[view]
        if output:
            if fmt == "rich":
                console = Console(record=True, width=160, file=io.StringIO())
                formats.side_table(t, "rich", title, console)
                atomic_write(Path(output), console.export_text())
            else:
                atomic_write(Path(output), formats.side_table(t, fmt, title))
            print(f"wrote {output}")
        elif fmt == "rich":
            formats.side_table(t, "rich", title)
        else:
            sys.stdout.write(formats.side_table(t, fmt, title))
    except RegbenchError as err:
        _fail(err)
    except OSError as err:
        _fail(_unwritable("--output", Path(output), err))
    if t.attrs.get("left_out"):
        print(f"{t.attrs['left_out']} group(s) left out: fewer than two members with predictions", file=sys.stderr)


def _rich_text(table) -> str:
    from regbench.reporting import formats

    console = Console(record=True, width=160, file=io.StringIO())
    formats.rich(table, console)
    return console.export_text()


@app.command(help="Write the report's PNG plots (learning curves, Δgap bars, regularization paths) into --out.")
def plot(
    paths: list[str] = Paths,
    out: str = typer.Option("plots", "--out", help="Folder for the PNG files."),
    dataset: list[str] = Datasets,
    model: list[str] = Models,
    regularizer: list[str] = Regs,
):
    _check_folder("--out", out)
    frame, table = _table(paths, dataset, model, regularizer)
    _plots(table, frame, out, "--out")


if __name__ == "__main__":
    app()
