"""The gap table in each output format: rich (terminal), markdown, csv, json, latex.

csv and json carry every number (means, stds, intervals, raw and corrected p); markdown, latex and the terminal
show the readable subset, one row per group.
"""

from __future__ import annotations

import math

import pandas as pd
from rich.console import Console
from rich.table import Table

from regbench.report.stats import CONFIDENCE, DELTAS
from regbench.train.population import BASELINE

FORMATS = ("rich", "markdown", "csv", "json", "latex")
DELTA_NAMES = {"gap_acc": "Δgap", "val_acc": "Δval", "test_acc": "Δtest"}
NOTE = (
    "train/val/test: accuracy/loss, mean over seeds; gap = train − val accuracy. "
    f"Δ = regularized − baseline of the same seed (paired), mean [{CONFIDENCE:.0%} t-interval over seeds]; "
    "p: paired t-test, Holm-corrected over the table's comparisons of that Δ."
)


def _num(x: float, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def _p(x: float) -> str:
    if x is None or math.isnan(x):
        return "—"
    return "<0.001" if x < 0.001 else f"{x:.3f}"


def _delta(row, m: str) -> str:
    if row["arm"] == BASELINE:
        return ""
    if row["pairs"] == 0:
        return "no baseline"
    if math.isnan(row[f"d_{m}_lo"]):
        return f"{_num(row[f'd_{m}'], True)} (1 seed)"
    return f"{_num(row[f'd_{m}'], True)} [{_num(row[f'd_{m}_lo'], True)}, {_num(row[f'd_{m}_hi'], True)}]"


def _delta_cell(row, m: str) -> str:
    """Mean, interval and corrected p stacked in one cell, so three deltas fit an 80-column terminal."""
    if row["pairs"] == 0:
        return "no baseline"
    if math.isnan(row[f"d_{m}_lo"]):
        return f"{_num(row[f'd_{m}'], True)}\n(1 seed)"
    lo, hi = row[f"d_{m}_lo"], row[f"d_{m}_hi"]
    return f"{_num(row[f'd_{m}'], True)}\n[{lo:+.3f}, {hi:+.3f}]\np={_p(row[f'p_{m}'])}"


def readable(t: pd.DataFrame) -> pd.DataFrame:
    """The shown columns as strings: a row per group."""
    rows = []
    for _, r in t.iterrows():
        row = {"dataset": r["dataset"], "model": r["model"], "config": r["config"], "regularizers": r["setting"]}
        row["seeds"] = str(r["seeds"])
        for split in ("train", "val", "test"):
            row[split] = f"{_num(r[f'{split}_acc'])}/{_num(r[f'{split}_loss'])}"
        row["gap"] = _num(r["gap_acc"])
        for m in DELTAS:
            row[f"{DELTA_NAMES[m]} [95% CI]"] = _delta(r, m)
            row[f"p({DELTA_NAMES[m]})"] = "" if r["arm"] == BASELINE else _p(r[f"p_{m}"])
        rows.append(row)
    out = pd.DataFrame(rows, columns=list(rows[0]) if rows else None)
    if not (t["config"] != "").any():
        out = out.drop(columns="config")
    return out


def markdown(t: pd.DataFrame) -> str:
    r = readable(t)
    cell = lambda v: str(v).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(cell, r.columns)) + " |", "|" + "|".join("---" for _ in r.columns) + "|"]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in r.itertuples(index=False)]
    return "\n".join(lines) + "\n\n" + NOTE + "\n"


_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "Δ": r"$\Delta$",
    "−": "-",
    "—": "--",
    "<": r"$<$",
}


def _tex(v) -> str:
    return "".join(_LATEX.get(c, c) for c in str(v))


def latex(t: pd.DataFrame) -> str:
    r = readable(t)
    lines = [
        r"\begin{tabular}{" + "l" * 3 + "r" * (len(r.columns) - 3) + "}",
        r"\hline",
        " & ".join(map(_tex, r.columns)) + r" \\",
        r"\hline",
    ]
    lines += [" & ".join(map(_tex, row)) + r" \\" for row in r.itertuples(index=False)]
    return "\n".join(lines + [r"\hline", r"\end{tabular}"]) + "\n"


def csv(t: pd.DataFrame) -> str:
    return t.to_csv(index=False)


def json(t: pd.DataFrame) -> str:
    return t.to_json(orient="records", indent=2, double_precision=15) + "\n"


def rich(t: pd.DataFrame, console: Console | None = None) -> None:
    """Per dataset / model / config, two tables that each fit a terminal: the metrics, then the paired deltas."""
    console = console or Console()
    r = readable(t)
    metrics = ["regularizers", "seeds", "train", "val", "test", "gap"]
    for key, idx in t.groupby(["dataset", "model", "config"], sort=False).groups.items():
        title = " / ".join(key[:2]) + (f"  ({key[2]})" if key[2] else "")
        table = Table(title=title, title_justify="left")
        for c in metrics:
            table.add_column(c, justify="left" if c == "regularizers" else "right", overflow="fold")
        for row in r.loc[idx, metrics].itertuples(index=False):
            table.add_row(*row)
        console.print(table)
        reg = t.loc[idx][t.loc[idx, "arm"] != BASELINE]
        if reg.empty:
            continue
        table = Table(title=f"{title}: paired against the baseline", title_justify="left", show_lines=True)
        table.add_column("regularizers", overflow="fold")
        for m in DELTAS:
            table.add_column(DELTA_NAMES[m], justify="right")
        for _, row in reg.iterrows():
            table.add_row(row["setting"], *(_delta_cell(row, m) for m in DELTAS))
        console.print(table)
    console.print(NOTE, style="dim")


def render(t: pd.DataFrame, fmt: str) -> str:
    return {"markdown": markdown, "csv": csv, "json": json, "latex": latex}[fmt](t)
