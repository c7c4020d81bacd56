"""The table a run prints when it ends: each arm's metrics over seeds, and its change against the baseline.

Deltas are paired: each regularized member is compared with the baseline member of the same seed (same initial
weights, same minibatches), and the mean and standard deviation are taken over those per-seed differences.
"""

from __future__ import annotations

import pandas as pd
from rich.console import Console
from rich.table import Table

from regbench.reporting.stats import paired_deltas

METRICS = {
    "train_acc": "train acc",
    "val_acc": "val acc",
    "test_acc": "test acc",
    "train_loss": "train loss",
    "val_loss": "val loss",
    "test_loss": "test loss",
    "gap_acc": "gap: train − val acc",
    "gap_loss": "gap: val − train loss",
}


def summarize(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """{'mean', 'std', 'delta_mean', 'delta_std'}: settings (baseline first) x METRICS, over seeds."""
    order = sorted(dict.fromkeys(df["setting"]), key=lambda s: s != "baseline")
    g = df.groupby("setting")[list(METRICS)]
    deltas = paired_deltas(df)
    dg = deltas.groupby("setting")[list(METRICS)]
    return {
        "mean": g.mean().reindex(order),
        "std": g.std(ddof=1).reindex(order),
        "delta_mean": dg.mean().reindex(order),
        "delta_std": dg.std(ddof=1).reindex(order),
        "seeds": df.groupby("setting")["seed"].nunique().reindex(order),
        "diverged": df.groupby("setting")["diverged"].sum().reindex(order),
        "unstable": df.groupby("setting")["unstable"].sum().reindex(order),
        "arms": df.drop_duplicates("setting").set_index("setting")["arm"].reindex(order),
    }


def pm(mean, std, signed: bool = False) -> str:
    if pd.isna(mean):
        return "—"
    m = f"{mean:+.3f}" if signed else f"{mean:.3f}"
    return m if pd.isna(std) else f"{m} ± {std:.3f}"


def render(s: dict[str, pd.DataFrame], title: str = "", console: Console | None = None) -> None:
    """Metrics as rows; each arm and, for regularized arms, its paired change against the baseline as columns."""
    table = Table(title=title or None, title_justify="left")
    table.add_column("metric")
    columns = []
    for setting in s["mean"].index:
        arm = s["arms"][setting]
        table.add_column(arm, justify="right")
        columns.append((setting, False))
        if arm != "baseline":
            table.add_column(f"Δ {arm}", justify="right")
            columns.append((setting, True))
    for metric, label in METRICS.items():
        cells = []
        for setting, delta in columns:
            if delta:
                cells.append(pm(s["delta_mean"].at[setting, metric], s["delta_std"].at[setting, metric], True))
            else:
                cells.append(pm(s["mean"].at[setting, metric], s["std"].at[setting, metric]))
        table.add_row(label, *cells)
    table.add_row("seeds", *[str(int(s["seeds"][st])) if not d else "" for st, d in columns], style="dim")
    for kind in ("diverged", "unstable"):
        if s[kind].sum():
            cells = [f"{int(s[kind][st])} of {int(s['seeds'][st])}" if not d else "" for st, d in columns]
            table.add_row(f"{kind} (left out)", *cells, style="bold red")
    console = console or Console()
    console.print(table)
    for setting in s["mean"].index:
        if setting != "baseline":
            console.print(f"{s['arms'][setting]} = {setting}", style="dim", soft_wrap=True)
    console.print("mean ± std over seeds; Δ = regularized − baseline of the same seed (paired).", style="dim")
    if s["diverged"].sum():
        console.print("diverged members (loss NaN/inf) are frozen when detected and left out of means.", style="dim")
    if s["unstable"].sum():
        console.print(
            "unstable members (final train loss above 2·ln(classes), train accuracy at chance) are left out of means.",
            style="dim",
        )
