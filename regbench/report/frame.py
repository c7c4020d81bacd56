"""Records -> one pandas DataFrame, a row per member; the shape every table and plot starts from."""

from __future__ import annotations

import json

import pandas as pd


def regularizer_label(regs: dict) -> str:
    """'baseline', or e.g. 'l2(strength=0.0001)+dropout(p=0.2)': the regularizers with their settings."""
    if not regs:
        return "baseline"
    parts = []
    for name, params in regs.items():
        inner = ",".join(f"{k}={v}" for k, v in params.items() if not isinstance(v, bool) or v)
        parts.append(f"{name}({inner})" if inner else name)
    return "+".join(parts)


def members_frame(record: dict, source: str = "") -> pd.DataFrame:
    job = record["job"]
    rows = []
    for m in record["members"]:
        rows.append(
            {
                "source": source,
                "dataset": job["dataset"],
                "model": job["model"],
                "arm": m["arm"],
                "setting": regularizer_label(m["regularizers"]),
                "regularizers": json.dumps(m["regularizers"], sort_keys=True),
                "seed": m["seed"],
                "diverged": bool(m.get("diverged", False)),
                **m["final"],
            }
        )
    df = pd.DataFrame(rows)
    # a diverged member's metrics are null in its record: NaN here, left out of means by pandas
    metrics = [c for c in df.columns if c.endswith(("_loss", "_acc")) or c.startswith("gap_")]
    return df.astype({c: float for c in metrics})
