"""`regbench report --complexity`: what each regularizer did to the model, per group, as means over its members.

"L1 makes weights sparse, max-norm caps norms" as numbers: the weights' total norm, the fraction of near-zero
weights, the largest layer's spectral norm, and the training margin (median, and divided by the product of the
layers' spectral norms), each member's from its record (train/complexity.py), averaged over the group's seeds.
"""

from __future__ import annotations

import pandas as pd

from regbench.errors import RunError
from regbench.reporting import stats
from regbench.reporting.frame import COMPLEXITY


def table(members: pd.DataFrame) -> pd.DataFrame:
    kept = stats.dedupe(members)
    kept = kept[kept[COMPLEXITY].notna().any(axis=1)]
    if kept.empty:
        raise RunError("--complexity: no record has complexity measures (records written before regbench 0.2?)")
    g = kept.groupby(stats.GROUP, sort=False)
    out = g[COMPLEXITY].mean()
    out = out.join(g[COMPLEXITY].std(ddof=1).add_suffix("_std")).join(g["seed"].nunique().rename("members"))
    out = out.reset_index()
    out["arm"] = g["arm"].first().to_numpy()
    out["config"] = out["context"].map(stats.context_labels(out["context"]))
    cols = ["dataset", "model", "config", "setting", "arm", "members"]
    return out[cols + [c for k in COMPLEXITY for c in (k, f"{k}_std")] + ["context"]]
