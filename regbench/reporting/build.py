"""`regbench report`'s pipeline: records below some paths -> filtered, Holm-corrected, sorted gap table."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from regbench.errors import RunError, UsageError
from regbench.reporting import stats
from regbench.reporting.collect import load_frame
from regbench.train.population import BASELINE


def filter_members(df: pd.DataFrame, datasets=(), models=(), regularizers=()) -> pd.DataFrame:
    """Members of the chosen datasets and models; with regularizers, the groups using any of them and the
    baselines they are compared with."""
    if datasets:
        df = df[df["dataset"].isin(datasets)]
    if models:
        df = df[df["model"].isin(models)]
    if regularizers:
        uses = df["regularizers"].map(lambda r: bool(set(json.loads(r)) & set(regularizers)))
        kept = df[uses]
        df = df[uses | ((df["arm"] == BASELINE) & df["source"].isin(kept["source"]))]
    return df


def build(
    paths: Iterable[str | Path],
    datasets=(),
    models=(),
    regularizers=(),
    sort: str | None = None,
    descending: bool = False,
    frame: pd.DataFrame | None = None,
    tuned: bool = False,
    select_seeds: int | None = None,
) -> pd.DataFrame:
    """The gap table; tuned: each regularizer at its best validated setting, over the seeds the choice never saw
    (reporting/tuned.py), with the candidates it was chosen among in `t.attrs["candidates"]` and what was done in
    `t.attrs["note"]`."""
    df = load_frame(paths) if frame is None else frame
    kept = filter_members(df, datasets, models, regularizers)
    if kept.empty:
        chosen = ", ".join(
            f"{k}={','.join(v)}"
            for k, v in (("dataset", datasets), ("model", models), ("regularizer", regularizers))
            if v
        )
        raise RunError(f"no records match {chosen}")
    if tuned:
        from regbench.reporting import tuned as tuning

        t, cand, seeds_of = tuning.tuned(kept, select_seeds)
        t.attrs["candidates"], t.attrs["note"] = cand, tuning.note(seeds_of)
    else:
        t = stats.adjust(stats.table(kept))
    if sort:
        if sort not in t.columns:
            raise UsageError(f"--sort {sort}: unknown column; allowed: {', '.join(c for c in t.columns)}")
        t = t.sort_values(sort, ascending=not descending, kind="stable", na_position="last").reset_index(drop=True)
    return t
