"""The gap table in each output format: rich (terminal), markdown, csv, json, latex, parquet.

csv, json and parquet carry every number (means, stds, intervals, raw and corrected p), csv and parquet with the
nested columns flattened; markdown, latex and the terminal show the readable subset, one row per group.
"""

from __future__ import annotations

import importlib.util
import io
import json as _json
import math

import pandas as pd
from rich.console import Console
from rich.table import Table

from regbench.errors import UsageError
from regbench.reporting.stats import CONFIDENCE, DELTAS, flatten
from regbench.train.population import BASELINE

FORMATS = ("rich", "markdown", "csv", "json", "latex", "parquet")
DELTA_NAMES = {"gap_acc": "Δgap", "val_acc": "Δval", "test_acc": "Δtest"}
NOTE = (
    "seeds: trained; members that diverged (loss NaN/inf) or are unstable (final train loss above 2·ln(classes) "
    "at chance train accuracy) are counted as left out and are in no mean; pairs: regularized and baseline members "
    "of the same seed, both kept, that the Δ columns average. "
    "train/val/test: accuracy/loss, mean over the kept seeds; gap = train − val accuracy. "
    f"Δ = regularized − baseline of the same seed (paired), mean [{CONFIDENCE:.0%} t-interval over pairs], "
    "the mean alone with 1 pair; "
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


def _no_delta(row, has_baseline: bool) -> str | None:
    """Why a regularized row has no Δ (no baseline, or none of its pairs valid); None when it has one."""
    if row["pairs"]:
        return None
    return "no valid pair" if has_baseline else "no baseline"


def _delta(row, m: str, has_baseline: bool = True) -> str:
    if row["arm"] == BASELINE:
        return ""
    why = _no_delta(row, has_baseline)
    if why:
        return why
    if row["pairs"] == 1:  # a mean of one difference: no interval, no test
        return f"{_num(row[f'd_{m}'], True)} (1 pair)"
    return f"{_num(row[f'd_{m}'], True)} [{_num(row[f'd_{m}_lo'], True)}, {_num(row[f'd_{m}_hi'], True)}]"


def _delta_cell(row, m: str, has_baseline: bool = True) -> str:
    """Mean, interval and corrected p stacked in one cell, so three deltas fit an 80-column terminal."""
    why = _no_delta(row, has_baseline)
    if why:
        return why
    if row["pairs"] == 1:
        return f"{_num(row[f'd_{m}'], True)}\n(1 pair)"
    lo, hi = row[f"d_{m}_lo"], row[f"d_{m}_hi"]
    return f"{_num(row[f'd_{m}'], True)}\n[{lo:+.3f}, {hi:+.3f}]\np={_p(row[f'p_{m}'])}"


def _baselines(t: pd.DataFrame) -> set:
    """The (dataset, model, context) triples that have a baseline row in the table."""
    return set(map(tuple, t.loc[t["arm"] == BASELINE, ["dataset", "model", "context"]].to_numpy().tolist()))


def _left_out(r) -> str:
    """Diverged and unstable members of a group, left out of its means: e.g. '1 diverged, 1 unstable', or '0'."""
    parts = [f"{int(r[k])} {k}" for k in ("diverged", "unstable") if r[k]]
    return ", ".join(parts) or "0"


def readable(t: pd.DataFrame) -> pd.DataFrame:
    """The shown columns as strings: a row per group."""
    rows = []
    based = _baselines(t)
    for _, r in t.iterrows():
        row = {"dataset": r["dataset"], "model": r["model"], "config": r["config"], "regularizers": r["setting"]}
        row["seeds"] = str(r["seeds"])
        row["left out"] = _left_out(r)
        row["pairs"] = "" if r["arm"] == BASELINE else str(r["pairs"])
        has_baseline = (r["dataset"], r["model"], r["context"]) in based
        for split in ("train", "val", "test"):
            row[split] = f"{_num(r[f'{split}_acc'])}/{_num(r[f'{split}_loss'])}"
        row["gap"] = _num(r["gap_acc"])
        for m in DELTAS:
            row[f"{DELTA_NAMES[m]} [95% CI]"] = _delta(r, m, has_baseline)
            row[f"p({DELTA_NAMES[m]})"] = "" if r["arm"] == BASELINE else _p(r[f"p_{m}"])
        rows.append(row)
    out = pd.DataFrame(rows, columns=list(rows[0]) if rows else None)
    if not (t["config"] != "").any():
        out = out.drop(columns="config")
    return out


def _markdown_candidates(t: pd.DataFrame) -> str:
    if "candidates" not in t.attrs:
        return ""
    cand = t.attrs["candidates"]
    lines = [
        "",
        t.attrs["note"],
        "",
        "| dataset | model | setting | seeds | val acc | val loss | chosen |",
        "|---" * 7 + "|",
    ]
    for r in cand.itertuples():
        cells = [r.dataset, r.model, r.setting, str(r.seeds), _num(r.val_acc), _num(r.val_loss), "✓" * r.chosen]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _markdown_table(r: pd.DataFrame) -> str:
    """A frame of strings as a markdown table (| in a cell escaped)."""
    cell = lambda v: str(v).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(cell, r.columns)) + " |", "|" + "|".join("---" for _ in r.columns) + "|"]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in r.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def markdown(t: pd.DataFrame) -> str:
    return _markdown_table(readable(t)) + "\n" + NOTE + "\n" + _markdown_candidates(t)


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


def _latex_table(r: pd.DataFrame, align: str) -> str:
    """A frame of strings as a LaTeX tabular with column alignment `align` (e.g. "lllrr")."""
    lines = [r"\begin{tabular}{" + align + "}", r"\hline", " & ".join(map(_tex, r.columns)) + r" \\", r"\hline"]
    lines += [" & ".join(map(_tex, row)) + r" \\" for row in r.itertuples(index=False)]
    return "\n".join(lines + [r"\hline", r"\end{tabular}"]) + "\n"


def latex(t: pd.DataFrame) -> str:
    r = readable(t)
    return _latex_table(r, "l" * 3 + "r" * (len(r.columns) - 3))


# Columns that hold JSON objects in the table (what the members' numbers depend on, and their regularizers). A CSV
# or Parquet file gets them flattened, one column per leaf ("config.model.width", "regularizers.l2.strength"): a
# spreadsheet or a dataframe filters on a column, not on a JSON string inside a cell. JSON output nests them.
NESTED = {"context": "config", "regularizers": "regularizers"}


def flat(t: pd.DataFrame) -> pd.DataFrame:
    """The table with NESTED's JSON columns replaced by one column per leaf, after the table's own columns."""
    parsed = {col: [_json.loads(v) for v in t[col]] for col in NESTED if col in t.columns}
    out = t.drop(columns=list(parsed)).reset_index(drop=True)
    extra = {}
    for col, objs in parsed.items():
        rows = [flatten(o, f"{NESTED[col]}.", empty=True) for o in objs]  # batch_norm: {} -> True, used
        for name in sorted({k for r in rows for k in r}):
            # a list (e.g. augment's ops) stays one cell, written as text; scalars keep their type
            extra[name] = [(str(v) if isinstance(v, list) else v) for v in (r.get(name) for r in rows)]
    return pd.concat([out, pd.DataFrame(extra)], axis=1)


def csv(t: pd.DataFrame) -> str:
    return flat(t).to_csv(index=False)


def json(t: pd.DataFrame) -> str:
    nested = t.copy()
    for col in NESTED:
        if col in nested.columns:
            nested[col] = [_json.loads(v) for v in nested[col]]
    return nested.to_json(orient="records", indent=2, double_precision=15) + "\n"


def has_pyarrow() -> bool:
    return importlib.util.find_spec("pyarrow") is not None


def require(fmt: str) -> None:
    """Refuse a format whose engine is not installed (Parquet's, pyarrow): called before anything is written."""
    if fmt == "parquet" and not has_pyarrow():
        raise UsageError("--format parquet: needs pyarrow; install it with: pip install 'regbench[parquet]'")


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    require("parquet")
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def parquet(t: pd.DataFrame) -> bytes:
    """The flattened table as Parquet (needs pyarrow: pip install 'regbench[parquet]')."""
    return _parquet_bytes(flat(t))


def rich(t: pd.DataFrame, console: Console | None = None) -> None:
    """Per dataset / model / config, two tables that each fit a terminal: the metrics, then the paired deltas."""
    console = console or Console()
    r = readable(t)
    metrics = ["regularizers", "seeds", "train", "val", "test", "gap"]
    # the members left out stacked under the seeds trained, so a table with none is as narrow as ever
    r["seeds"] = [
        "\n".join([str(row["seeds"])] + [f"{int(row[k])} {k}" for k in ("diverged", "unstable") if row[k]])
        for _, row in t.iterrows()
    ]
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
        has_baseline = bool((t.loc[idx, "arm"] == BASELINE).any())
        for _, row in reg.iterrows():
            pairs = f"{row['pairs']} pair{'s' * (row['pairs'] != 1)}"
            table.add_row(f"{row['setting']}\n{pairs}", *(_delta_cell(row, m, has_baseline) for m in DELTAS))
        console.print(table)
    console.print(NOTE, style="dim")
    if "candidates" in t.attrs:
        _rich_candidates(t.attrs["candidates"], console)
        console.print(t.attrs["note"], style="dim")


def _rich_candidates(cand: pd.DataFrame, console: Console) -> None:
    """The settings each regularizer was chosen among, on the choosing seeds: the regularization path."""
    for (dataset, model, _), fam in cand.groupby(["dataset", "model", "context"], sort=False):
        table = Table(title=f"{dataset} / {model}: chosen on validation (choosing seeds)", title_justify="left")
        for c, justify in (("setting", "left"), ("seeds", "right"), ("val acc", "right"), ("val loss", "right")):
            table.add_column(c, justify=justify, overflow="fold")
        table.add_column("chosen")
        for r in fam.itertuples():
            table.add_row(r.setting, str(r.seeds), _num(r.val_acc), _num(r.val_loss), "✓" if r.chosen else "")
        console.print(table)


def side_table(t: pd.DataFrame, fmt: str, title: str = "", console: Console | None = None) -> str | bytes | None:
    """A table other than the gap table (e.g. --bias-variance's), in any of FORMATS: numbers to 3 decimals where
    read by a person, in full in csv/json/parquet. rich prints to `console` and returns None."""
    shown = t.drop(columns=[c for c in ("context",) if c in t.columns])
    if fmt == "csv":
        return shown.to_csv(index=False)
    if fmt == "json":
        return shown.to_json(orient="records", indent=2, double_precision=15) + "\n"
    if fmt == "parquet":
        return _parquet_bytes(shown)
    cells = shown.map(lambda v: f"{v:.3f}" if isinstance(v, float) else str(v))
    if fmt == "rich":
        table = Table(title=title, title_justify="left")
        for c in cells.columns:
            table.add_column(c, justify="left" if c in ("setting", "config") else "right")
        for row in cells.itertuples(index=False):
            table.add_row(*row)
        (console or Console()).print(table)
        return None
    if fmt == "latex":
        return _latex_table(cells, "l" * len(cells.columns))
    return (f"{title}\n\n" if title else "") + _markdown_table(cells)


BINARY = ("parquet",)  # formats written to a file only (--output), never to a terminal


def render(t: pd.DataFrame, fmt: str) -> str | bytes:
    return {"markdown": markdown, "csv": csv, "json": json, "latex": latex, "parquet": parquet}[fmt](t)
