"""Records -> one pandas DataFrame, a row per member; the shape every table and plot starts from."""

from __future__ import annotations

import json

import pandas as pd

# Trainer keys that choose which seeds run or how progress is shown; they never change a given seed's numbers.
# Everything else in the resolved config (minus the regularizers) must match for two members to be compared.
NOT_CONTEXT = ("seed", "seeds", "progress", "device")


def regularizer_label(regs: dict) -> str:
    """'baseline', or e.g. 'l2(strength=0.0001)+dropout(p=0.2)': the regularizers with their settings."""
    if not regs:
        return "baseline"
    parts = []
    for name, params in regs.items():
        inner = ",".join(f"{k}={v}" for k, v in params.items() if not isinstance(v, bool) or v)
        parts.append(f"{name}({inner})" if inner else name)
    return "+".join(parts)


def context(record: dict) -> str:
    """What a member's numbers depend on besides its seed and regularizers, as canonical JSON.

    The resolved config minus the regularizers and NOT_CONTEXT, plus the device it actually ran on (auto, cpu and
    cuda runs can differ in the last bits). Members pair with a baseline, and groups merge, only within one context,
    so runs with different budgets or data never mix.
    """
    prov = record.get("provenance") or {}
    cfg = {k: v for k, v in (prov.get("config") or {}).items() if k != "regularizers"}
    if isinstance(cfg.get("trainer"), dict):
        cfg["trainer"] = {k: v for k, v in cfg["trainer"].items() if k not in NOT_CONTEXT}
    cfg["device"] = str(prov.get("device", "")).split(":")[0]
    return json.dumps(cfg, sort_keys=True, default=str)


def members_frame(record: dict, source: str = "") -> pd.DataFrame:
    job = record["job"]
    ctx = context(record)
    rows = []
    for i, m in enumerate(record["members"]):
        rows.append(
            {
                "source": source,
                "member": m.get("member", i),
                "dataset": job["dataset"],
                "model": job["model"],
                "context": ctx,
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
