"""Groups, paired deltas against the baseline, 95% t-intervals over seeds and Holm-corrected paired t-tests.

A group is one dataset x model x context (trainer and data settings) x regularizer combination with its settings.
Each regularized member is paired with the baseline member of the same seed from its own record (same population:
same initial weights, same minibatches); a baseline from another record of the same context is the fallback, as
it trained the same computation. Members that appear in several records (a re-run, a baseline every job of a sweep
carries) are counted once per seed.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from regbench.train.population import BASELINE

METRICS = ["train_acc", "val_acc", "test_acc", "train_loss", "val_loss", "test_loss", "gap_acc", "gap_loss"]
# The comparisons the report tests: did the gap shrink, and did validation / test accuracy move?
DELTAS = ["gap_acc", "val_acc", "test_acc"]
GROUP = ["dataset", "model", "context", "setting"]
SAME = ["dataset", "model", "context", "seed"]
CONFIDENCE = 0.95


def dedupe(df: pd.DataFrame) -> pd.DataFrame:
    """One row per group and seed: the same member recorded twice is the same computation."""
    return df.drop_duplicates(GROUP + ["seed"], keep="first")


def paired_deltas(df: pd.DataFrame) -> pd.DataFrame:
    """A row per valid pair: a regularized member's metrics minus its baseline's, the same seed in the same context,
    both finite (neither diverged nor unstable)."""
    base = df[df["arm"] == BASELINE]
    reg = dedupe(df[df["arm"] != BASELINE]).reset_index()
    own_keys = ["source", "seed"]
    own = reg.merge(base.drop_duplicates(own_keys)[own_keys + METRICS], on=own_keys, suffixes=("", "_base"))
    rest = reg[~reg["index"].isin(own["index"])]
    other = rest.merge(base.drop_duplicates(SAME)[SAME + METRICS], on=SAME, suffixes=("", "_base"))
    joined = pd.concat([own, other]).set_index("index").sort_index()
    out = joined[GROUP + ["arm", "seed", "source", "member"]].copy()
    for m in METRICS:
        out[m] = joined[m] - joined[f"{m}_base"]
    # a pair where either member diverged or is unstable (its metrics NaN) compares nothing: it is not a pair
    return out[np.isfinite(out[METRICS].to_numpy(dtype=float)).all(axis=1)]


def t_interval(values) -> tuple[float, float, float]:
    """(mean, low, high): the 95% Student-t interval of the mean; no interval from a single value."""
    x = np.asarray(values, dtype=float)
    mean = float(x.mean()) if x.size else math.nan
    if x.size < 2:
        return mean, math.nan, math.nan
    from scipy import stats  # here, not at the top: importing scipy.stats costs every `regbench run` 1.3-1.8 s

    half = stats.t.ppf(0.5 + CONFIDENCE / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return mean, mean - half, mean + half


def paired_p(differences) -> float:
    """Two-sided p-value of the paired t-test (a one-sample test on the per-seed differences)."""
    x = np.asarray(differences, dtype=float)
    if x.size < 2:
        return math.nan
    if np.all(x == x[0]):  # no spread: the t statistic is undefined (0/0) or infinite
        return 1.0 if x[0] == 0 else 0.0
    from scipy import stats

    return float(stats.ttest_1samp(x, 0.0).pvalue)


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjustment over the finite p-values (NaN stays NaN and is not counted as a comparison)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = idx.size
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def flatten(d: dict, prefix: str = "", empty=None) -> dict:
    """A nested dict as one level of dotted keys: {"model": {"width": 100}} -> {"model.width": 100}. An empty dict
    leaves no key, or with `empty` given, a key holding it (a regularizer without parameters is still used)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v == {} and empty is not None:
            out[f"{prefix}{k}"] = empty
        elif isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}.", empty))
        else:
            out[f"{prefix}{k}"] = v
    return out


def context_labels(contexts) -> dict[str, str]:
    """Each context named by the settings where it differs from the others ('' when all agree)."""
    flat = {c: flatten(json.loads(c)) for c in dict.fromkeys(contexts)}
    keys = sorted({k for f in flat.values() for k in f} - {"dataset.name", "model.name"})
    varying = [k for k in keys if len({json.dumps(f.get(k), default=str) for f in flat.values()}) > 1]
    return {c: ",".join(f"{k}={f.get(k)}" for k in varying) for c, f in flat.items()}


def table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per group, baselines first within a dataset/model/context: means, stds, deltas, intervals, raw p.

    Holm's correction depends on which comparisons a table shows: apply `adjust` once the table is filtered.
    """
    deltas = paired_deltas(df)  # before deduplicating: a member's own record keeps its own baseline
    df = dedupe(df)
    by_group = {key: g for key, g in deltas.groupby(GROUP, sort=False)}
    labels = context_labels(df["context"])
    rows = []
    for key, g in df.groupby(GROUP, sort=False):
        row = dict(zip(GROUP, key))
        row["config"] = labels[row["context"]]
        row["arm"] = g["arm"].iloc[0]
        row["regularizers"] = g["regularizers"].iloc[0]
        # seeds trained; diverged and unstable members are among them, counted, and left out of the means (NaN)
        row["seeds"] = int(g["seed"].nunique())
        row["diverged"] = int(g["diverged"].sum())
        row["unstable"] = int(g["unstable"].sum())
        for m in METRICS:
            row[m] = g[m].mean()
            row[f"{m}_std"] = g[m].std(ddof=1)
        d = by_group.get(key) if row["arm"] != BASELINE else None
        row["pairs"] = 0 if d is None else len(d)
        for m in DELTAS:
            mean, lo, hi = (math.nan,) * 3 if d is None else t_interval(d[m])
            row[f"d_{m}"], row[f"d_{m}_lo"], row[f"d_{m}_hi"] = mean, lo, hi
            row[f"p_{m}_raw"] = math.nan if d is None else paired_p(d[m])
        rows.append(row)
    out = pd.DataFrame(rows)
    out["_base"] = out["arm"] != BASELINE
    out = out.sort_values(["dataset", "model", "config", "_base", "setting"], kind="stable").drop(columns="_base")
    return out.reset_index(drop=True)


def adjust(t: pd.DataFrame) -> pd.DataFrame:
    """Holm over the comparisons in this table, separately for each tested delta."""
    t = t.copy()
    for m in DELTAS:
        t[f"p_{m}"] = holm(t[f"p_{m}_raw"].to_numpy())
    return t
