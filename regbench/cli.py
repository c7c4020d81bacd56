"""The `regbench` command. Each command is a thin shell over the core; `run` hands its arguments to Hydra."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

import regbench
from regbench.errors import RegbenchError

app = typer.Typer(
    help="Compare regularizers by the train/validation gap they leave, against a paired unregularized baseline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool):
    if value:
        print(f"regbench {regbench.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks (as does HYDRA_FULL_ERROR=1)."),
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


RUN_HELP = """Train the baseline and the regularized model over several seeds; print the gap table.

OVERRIDES are Hydra overrides, and Hydra's flags pass through (-m/--multirun, --cfg job, ...).

\b
Examples:
  regbench run                                          # MNIST-1D, MLP, baseline vs [l2, dropout], 3 seeds
  regbench run dataset=digits model=cnn 'regularizers=[dropout]' regularizers.dropout.p=0.3
  regbench run 'regularizers=[l1]' trainer.seeds=5 trainer.epochs=50
  regbench run -m 'regularizers=[l1],[l2],[dropout]'    # one job folder each
  regbench run --cfg job                                # print the composed config
"""


@app.command(
    help=RUN_HELP,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def run(
    ctx: typer.Context,
    overrides: list[str] = typer.Argument(None, help="Hydra overrides and flags."),
    force: bool = typer.Option(False, "--force", help="Re-run jobs whose complete records exist (resume=false)."),
):
    from regbench import overrides as checks

    args = list(overrides or []) + list(ctx.args) + (["trainer.resume=false"] if force else [])
    try:
        n_jobs = checks.check(args)
    except RegbenchError as err:
        _fail(err)
    from regbench import hydra_app

    sys.argv = ["regbench run", *args]
    if not n_jobs:  # --cfg, --help, ...: Hydra prints and no job runs
        hydra_app.main()
        return
    fd, status = tempfile.mkstemp(prefix="regbench-status-", suffix=".jsonl")
    os.close(fd)
    os.environ[hydra_app.STATUS_ENV] = status
    try:
        hydra_app.main()
        code = _summarise(_outcomes(Path(status)))
    finally:
        os.environ.pop(hydra_app.STATUS_ENV, None)
        Path(status).unlink(missing_ok=True)
    if code:
        raise typer.Exit(code)


@app.command("list")
def list_options():
    """Show every dataset, model and regularizer with its parameters, defaults and allowed ranges."""
    from regbench import data, models, regularizers
    from regbench.config import TrainerConfig
    from regbench.schema import describe

    console = Console()
    sections = [
        ("dataset", {n: (e.schema, e.summary) for n, e in data.DATASETS.items()}),
        ("model", {n: (e.schema, e.summary) for n, e in models.MODELS.items()}),
        ("regularizers", {n: (c.Config, c.summary) for n, c in regularizers.REGULARIZERS.items()}),
        ("trainer", {"default": (TrainerConfig, "optimizer, budget, device and seeds")}),
    ]
    for group, entries in sections:
        table = Table(title=f"{group}", title_justify="left", show_lines=False)
        for col in ("option", "parameter", "default", "allowed", "meaning"):
            table.add_column(col, overflow="fold")
        for name, (schema, summary) in entries.items():
            table.add_row(f"[bold]{name}[/bold]", "", "", "", summary)
            for pname, default, allowed, help_ in describe(schema):
                table.add_row("", pname, default, allowed, help_)
        console.print(table)
    console.print("Choose with e.g. dataset=digits model=cnn 'regularizers=[l2,dropout]' regularizers.l2.strength=1e-3")


if __name__ == "__main__":
    app()
