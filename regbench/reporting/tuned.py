"""`regbench report --tuned`: each regularizer at its best validated strength, reported on seeds the choice never saw.

A fair comparison tunes every regularizer (a reviewer's first question). Over the members of a sweep such as
experiment=tuned (each regularizer alone over a grid of strengths, several seeds, the shared baselines):

  1. the seeds of each dataset/model/context are split: the first half (or --select-seeds N) choose, the rest report;
  2. for each regularizer (each arm: l2, dropout, l2+dropout, ...) the setting with the highest mean validation
     accuracy over the choosing seeds wins (ties: the lower mean validation loss, then the weaker setting listed
     first); no test number and no reporting seed enters the choice;
  3. the table is the usual paired gap table over the reporting seeds only: the baseline and each arm's chosen
     setting, with its Δ against the baseline of the same seed and Holm-corrected p over these comparisons.

The candidates (every setting with its choosing-seed means, the winner marked) come back beside the table: the
regularization path the choice was made on.
"""

from __future__ import annotations

import pandas as pd

from regbench.errors import UsageError
from regbench.reporting import stats
from regbench.train.population import BASELINE

KEY = ["dataset", "model", "context"]


def split_seeds(seeds, select: int | None) -> tuple[list, list]:
    """(choosing seeds, reporting seeds): the first `select` of the sorted seeds (default: half) and the rest."""
    seeds = sorted(set(seeds))
    n = len(seeds) // 2 if select is None else select
    if not 1 <= n < len(seeds):
        raise UsageError(
            f"--select-seeds {n}: needs at least one seed to choose on and one to report on; these records have "
            f"{len(seeds)} seed(s) ({', '.join(map(str, seeds))}); run more with trainer.seeds=N (experiment=tuned: 6)"
        )
    return seeds[:n], seeds[n:]


def candidates(df: pd.DataFrame, chooser: list) -> pd.DataFrame:
    """Every regularized setting's means over the choosing seeds, in the table's order, with `chosen` marking each
    arm's winner: columns dataset, model, context, arm, setting, regularizers, seeds, val_acc, val_loss, chosen."""
    sel = stats.dedupe(df[(df["arm"] != BASELINE) & df["seed"].isin(chooser)])
    rows = (
        sel.groupby([*KEY, "arm", "setting"], sort=False)
        .agg(
            regularizers=("regularizers", "first"),
            seeds=("seed", "nunique"),
            val_acc=("val_acc", "mean"),
            val_loss=("val_loss", "mean"),
        )
        .reset_index()
    )
    rows["chosen"] = False
    for _, fam in rows.groupby([*KEY, "arm"], sort=False):
        ranked = fam.sort_values(["val_acc", "val_loss"], ascending=[False, True], kind="stable", na_position="last")
        if ranked["val_acc"].notna().any():
            rows.loc[ranked.index[0], "chosen"] = True
    return rows


def tuned(df: pd.DataFrame, select: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(table over the reporting seeds, candidates, {context: (choosing seeds, reporting seeds)})."""
    tables, cands, seeds_of = [], [], {}
    for key, g in df.groupby(KEY, sort=False):
        chooser, reporter = split_seeds(g["seed"], select)
        seeds_of[key[2]] = (chooser, reporter)
        c = candidates(g, chooser)
        cands.append(c)
        won = set(c.loc[c["chosen"], "setting"])
        kept = g[g["seed"].isin(reporter) & ((g["arm"] == BASELINE) | g["setting"].isin(won))]
        if not kept.empty:
            tables.append(kept)
    cand = pd.concat(cands, ignore_index=True)
    if not cand["chosen"].any():  # baselines only, or no regularized member with a validation accuracy
        raise UsageError("--tuned: no regularized members to choose among")
    t = stats.adjust(stats.table(pd.concat(tables)))
    picked = cand[cand["chosen"]].set_index([*KEY, "setting"])
    among = cand.groupby([*KEY, "arm"]).size()  # how many settings each arm was chosen among
    t["chosen_from"] = [
        int(among.get((r.dataset, r.model, r.context, r.arm), 0)) if r.arm != BASELINE else 0 for r in t.itertuples()
    ]
    t["select_val_acc"] = [
        picked["val_acc"].get((r.dataset, r.model, r.context, r.setting), float("nan")) for r in t.itertuples()
    ]
    t["select_seeds"] = [",".join(map(str, seeds_of[c][0])) for c in t["context"]]
    t["report_seeds"] = [",".join(map(str, seeds_of[c][1])) for c in t["context"]]
    return t, cand, seeds_of


def note(seeds_of: dict) -> str:
    parts = sorted(
        {f"seeds {','.join(map(str, c))} choose, {','.join(map(str, r))} report" for c, r in seeds_of.values()}
    )
    return (
        "tuned: each regularizer at the setting with the best mean validation accuracy over the choosing seeds ("
        + "; ".join(parts)
        + "); every number in the table is over the reporting seeds, which the choice never saw"
    )
