"""PNG figures through matplotlib's Agg backend: learning curves, Δgap bars, regularization paths.

Every figure is drawn from the same deduplicated members and paired deltas as the table, so a plot never shows a
number the table does not.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed, or wanted on a cluster node

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from regbench.errors import RunError  # noqa: E402
from regbench.reporting import stats  # noqa: E402
from regbench.results import records  # noqa: E402
from regbench.train.population import BASELINE  # noqa: E402

COLORS = {"baseline": "tab:blue", "regularized": "tab:orange"}


def slug(*parts: str, context: str = "") -> str:
    """A short file-name-safe name, kept unique (across contexts too) by a hash of everything it stands for."""
    text = "-".join(p for p in parts if p)
    short = re.sub(r"[^A-Za-z0-9.=]+", "_", text)[:60].strip("_")
    return f"{short}-{hashlib.sha1((text + context).encode()).hexdigest()[:6]}"


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")  # the whole of every label, whatever tight_layout left
    plt.close(fig)
    return path


def _history(source: str, cache: dict) -> pd.DataFrame | None:
    if source not in cache:
        path = Path(source) / records.HISTORY
        try:
            cache[source] = pd.read_csv(path)
        except (OSError, ValueError) as err:
            print(f"regbench: warning: no learning curves from {path}: {err}", file=sys.stderr)
            cache[source] = None
    return cache[source]


def _band(ax, h: pd.DataFrame, metric: str, color: str, style: str, label: str) -> None:
    g = h.groupby("epoch")[metric]
    mean, std = g.mean(), g.std(ddof=1).fillna(0.0)
    ax.plot(mean.index, mean.values, style, color=color, label=label)
    ax.fill_between(mean.index, (mean - std).values, (mean + std).values, color=color, alpha=0.2, linewidth=0)


def learning_curves(members: pd.DataFrame, out: Path) -> list[Path]:
    """One figure per regularized group: train and val accuracy per epoch, baseline against regularized."""
    cache: dict = {}
    written = []
    reg = members[members["arm"] != BASELINE]
    for key, g in reg.groupby(stats.GROUP, sort=False):
        curves = {"baseline": [], "regularized": []}
        for source, rows in g.groupby("source", sort=False):
            h = _history(source, cache)
            if h is None:
                continue
            seeds = set(rows["seed"])
            curves["regularized"].append(h[h["member"].isin(rows["member"])])
            curves["baseline"].append(h[(h["arm"] == BASELINE) & h["seed"].isin(seeds)])
        if not curves["regularized"]:
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for arm, parts in curves.items():
            h = pd.concat(parts).drop_duplicates(["seed", "epoch"])
            _band(ax, h, "train_acc", COLORS[arm], "-", f"{arm} train")
            _band(ax, h, "val_acc", COLORS[arm], "--", f"{arm} val")
        ax.set(xlabel="epoch", ylabel="accuracy (mean ± std over seeds)", title=f"{key[0]} / {key[1]}: {key[3]}"[:90])
        ax.title.set_fontsize(9)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        written.append(_save(fig, out / f"curves-{slug(key[0], key[1], key[3], context=key[2])}.png"))
    return written


def _labels(groups: pd.DataFrame) -> list[str]:
    """Each group's whole name on a plot's axis: dataset/model, setting, and the config where contexts differ."""
    return [f"{r.dataset}/{r.model} {r.setting}" + (f" [{r.config}]" if r.config else "") for r in groups.itertuples()]


def _label_inches(labels: list[str]) -> float:
    """The width the longest label takes at 7 pt (~0.065 inch a character), so that none is clipped."""
    return 0.065 * max(map(len, labels))


def gap_bars(t: pd.DataFrame, out: Path) -> list[Path]:
    """Δgap of every regularized group with its interval (none for a single seed), largest cut first."""
    reg = t[(t["arm"] != BASELINE) & t["d_gap_acc"].notna()]
    if reg.empty:
        return []
    return [_save(gap_figure(reg), out / "gap-delta.png")]


def gap_figure(reg: pd.DataFrame):
    """The bars sorted by effect (the regularizer that cuts the gap most on top), each labelled in full: three
    early-stopping cells differ only at the end of their names, so a truncated label would make them look alike.
    The figure is as wide as its longest label needs, so neither labels nor the axis title are clipped."""
    reg = reg.sort_values("d_gap_acc", kind="stable")
    labels = _labels(reg)
    low = (reg["d_gap_acc"] - reg["d_gap_acc_lo"]).fillna(0.0)
    high = (reg["d_gap_acc_hi"] - reg["d_gap_acc"]).fillna(0.0)
    fig, ax = plt.subplots(figsize=(5 + _label_inches(labels), 1.6 + 0.3 * len(reg)))
    y = range(len(reg))
    ax.barh(y, reg["d_gap_acc"], xerr=[low, high], color="tab:orange", capsize=3)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(list(y), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(
        "Δgap (train − val accuracy), regularized − baseline\n95% t-interval over seeds; left of 0 closes the gap"
    )
    ax.grid(axis="x", alpha=0.3)
    return fig


def _flat_settings(settings_json: str) -> dict:
    """A member's regularizers as {"l2.strength": 1e-4, ...}."""
    return stats.flatten(json.loads(settings_json))


def regularization_paths(t: pd.DataFrame, out: Path) -> list[Path]:
    """Metric against strength, for each regularizer parameter swept with the others held fixed."""
    reg = t[t["arm"] != BASELINE].copy()
    written = []
    reg["_params"] = reg["regularizers"].map(_flat_settings)
    for (dataset, model, ctx, arm), fam in reg.groupby(["dataset", "model", "context", "arm"], sort=False):
        params = pd.DataFrame(list(fam["_params"]), index=fam.index)
        for p in params.columns:
            values = params[p]
            if values.map(lambda v: isinstance(v, bool) or not isinstance(v, (int, float))).any():
                continue
            others = [c for c in params.columns if c != p]
            keys = params[others].astype(str).agg("|".join, axis=1) if others else pd.Series("", index=fam.index)
            for _, idx in keys.groupby(keys).groups.items():
                line = fam.loc[idx].assign(_x=values.loc[idx]).sort_values("_x")
                if line["_x"].nunique() < 2:
                    continue
                written.append(_path_figure(line, t, p, out, (dataset, model, ctx, arm, keys.loc[idx[0]])))
    return written


def _path_figure(line: pd.DataFrame, t: pd.DataFrame, param: str, out: Path, key) -> Path:
    dataset, model, ctx, arm, fixed = key
    x = line["_x"].astype(float)
    base = t[(t["arm"] == BASELINE) & (t["dataset"] == dataset) & (t["model"] == model) & (t["context"] == ctx)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for metric, style in (("train_acc", "-o"), ("val_acc", "--o")):
        left.plot(x, line[metric], style, color=COLORS["regularized"], label=f"{arm} {metric.split('_')[0]}")
        if not base.empty:
            left.axhline(
                base[metric].iloc[0],
                linestyle=style[:-1],
                color=COLORS["baseline"],
                label=f"baseline {metric.split('_')[0]}",
            )
    left.set(xlabel=param, ylabel="accuracy")
    left.legend(fontsize=8)
    right.plot(x, line["d_gap_acc"], "-o", color=COLORS["regularized"])
    if line["d_gap_acc_lo"].notna().any():
        right.fill_between(x, line["d_gap_acc_lo"], line["d_gap_acc_hi"], color=COLORS["regularized"], alpha=0.2)
    right.axhline(0.0, color="black", linewidth=0.8)
    right.set(xlabel=param, ylabel="Δgap (train − val acc) vs baseline")
    for ax in (left, right):
        if (x > 0).all() and x.max() / x.min() >= 10:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{dataset} / {model}: {arm} over {param}", fontsize=10)
    return _save(fig, out / f"path-{slug(dataset, model, arm, param, fixed, context=ctx)}.png")


def tuned_paths(cand: pd.DataFrame, out: Path) -> list[Path]:
    """For a tuned report: each regularizer's validation accuracy (choosing seeds) against the setting it was
    chosen among, the winner marked: the path the choice was made on."""
    written = []
    for (dataset, model, ctx, arm), fam in cand.groupby(["dataset", "model", "context", "arm"], sort=False):
        if len(fam) < 2:
            continue
        params = pd.DataFrame([_flat_settings(r) for r in fam["regularizers"]], index=fam.index)
        varying = [c for c in params.columns if params[c].nunique() > 1]
        numeric = len(varying) == 1 and params[varying[0]].map(lambda v: isinstance(v, (int, float))).all()
        fig, ax = plt.subplots(figsize=(6, 4))
        if numeric:
            order = params[varying[0]].astype(float).sort_values().index
            x, xlabel = params.loc[order, varying[0]].astype(float), varying[0]
        else:
            order, xlabel = fam.index, "setting"
            x = pd.Series(range(len(fam)), index=order)
            ax.set_xticks(list(x), list(fam.loc[order, "setting"]), rotation=30, ha="right", fontsize=7)
        ax.plot(x, fam.loc[order, "val_acc"], "-o", color=COLORS["regularized"], label="val acc (choosing seeds)")
        won = fam.loc[order][fam.loc[order, "chosen"]]
        ax.plot(
            x[won.index], won["val_acc"], "*", markersize=16, color="tab:red", label=f"chosen: {won['setting'].iloc[0]}"
        )
        if numeric and (x > 0).all() and x.max() / x.min() >= 10:
            ax.set_xscale("log")
        ax.set(xlabel=xlabel, ylabel="validation accuracy", title=f"{dataset} / {model}: {arm}, tuned")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        written.append(_save(fig, out / f"tuned-{slug(dataset, model, arm, context=ctx)}.png"))
    return written


def complexity_bars(members: pd.DataFrame, out: Path) -> list[Path]:
    """Per group, the mean of each complexity measure over its seeds, one panel per measure, groups in the table's
    order: sparsity, norms and margins side by side."""
    from regbench.reporting import complexity

    try:
        c = complexity.table(members)
    except RunError:
        return []
    labels = _labels(c)
    shown = [("near_zero", "near-zero weights (fraction)"), ("weight_norm", "weight norm"),
             ("spectral_max", "largest spectral norm"), ("margin_median", "median train margin")]  # fmt: skip
    fig, axes = plt.subplots(
        1, len(shown), figsize=(4 + _label_inches(labels) + 2.5 * len(shown), 1.6 + 0.3 * len(c)), sharey=True
    )
    y = list(range(len(c)))
    for ax, (col, name) in zip(axes, shown):
        color = [COLORS["baseline"] if a == BASELINE else COLORS["regularized"] for a in c["arm"]]
        ax.barh(y, c[col], xerr=c[f"{col}_std"].fillna(0.0), color=color, capsize=2)
        ax.set_xlabel(name, fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, labels, fontsize=7)
    axes[0].invert_yaxis()
    return [_save(fig, out / "complexity.png")]


def plot_all(t: pd.DataFrame, members: pd.DataFrame, out: str | Path) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kept = stats.dedupe(members.merge(t[stats.GROUP], on=stats.GROUP))
    written = learning_curves(kept, out) + gap_bars(t, out) + regularization_paths(t, out)
    if "candidates" in t.attrs:
        written += tuned_paths(t.attrs["candidates"], out)
    return written + complexity_bars(kept, out)
