"""Records -> one pandas DataFrame, a row per member; the shape every table and plot starts from."""

from __future__ import annotations

import json
import math

import pandas as pd

from regbench.config import MEMBER_KEYS, NOT_NUMBERS

# Trainer keys that choose which seeds run, or never change the numbers (TrainerConfig's field metadata), and the
# device asked for, which context() replaces by the device the job ran on. Everything else in the resolved config
# (minus the regularizers) must match for two members to be compared. `predictions` changes what a job keeps, not
# its numbers; it stays in the run id (a record without predictions does not stand for one with them).
NOT_CONTEXT = (*MEMBER_KEYS, *NOT_NUMBERS, "device", "predictions")


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
    cfg = {k: v for k, v in (prov.get("config") or {}).items() if k not in ("regularizers", "logger")}
    if isinstance(cfg.get("trainer"), dict):
        cfg["trainer"] = {k: v for k, v in cfg["trainer"].items() if k not in NOT_CONTEXT}
    cfg["device"] = str(prov.get("device", "")).split(":")[0]
    return json.dumps(cfg, sort_keys=True, default=str)


# A member is unstable when training blew its loss up and left it guessing: final training loss above
# UNSTABLE_LOSS x ln(classes) (twice what a uniform guess costs, the loss at initialisation) and training accuracy
# within UNSTABLE_ACC of the way from chance to perfect. Its numbers are finite but meaningless (a loss in the
# thousands at 10% accuracy), so the report leaves it out of means like a diverged member and counts it.
UNSTABLE_LOSS = 2.0
UNSTABLE_ACC = 0.1


def unstable(final: dict, classes: int | None) -> bool:
    """The rule above; False when the record does not say how many classes there are (older records)."""
    loss, acc = final.get("train_loss"), final.get("train_acc")
    if not classes or classes < 2 or loss is None or acc is None:
        return False
    chance = 1 / classes
    blown = not math.isfinite(loss) or loss > UNSTABLE_LOSS * math.log(classes)
    return blown and acc <= chance + UNSTABLE_ACC * (1 - chance)


COMPLEXITY = ["weight_norm", "near_zero", "spectral_max", "margin_median", "margin_normalized"]


def complexity_summary(c: dict) -> dict:
    """The few numbers of a member's complexity record (train/complexity.py) a report shows: the weights' total norm,
    the mean over layers of the near-zero fraction, the largest layer's spectral norm, the median margin and its
    spectrally normalised value."""
    layers = c["layers"]
    return {
        "weight_norm": math.sqrt(sum(layer["norm"] ** 2 for layer in layers)),
        "near_zero": sum(layer["near_zero"] for layer in layers) / max(1, len(layers)),
        "spectral_max": max((layer["spectral"] for layer in layers), default=math.nan),
        "margin_median": c["margin"]["q50"],
        "margin_normalized": c["margin"]["normalized"],
    }


def _complexity(member: dict) -> dict:
    """The member's complexity summary, NaN where its record has none (older records, diverged members)."""
    c = member.get("complexity")
    try:
        values = complexity_summary(c) if c and not member.get("diverged") else {}
    except (KeyError, TypeError, ValueError):  # a partial entry (non-finite numbers are null): treat as absent
        values = {}
    return {k: (math.nan if values.get(k) is None else float(values[k])) for k in COMPLEXITY}


def members_frame(record: dict, source: str = "") -> pd.DataFrame:
    job = record["job"]
    ctx = context(record)
    classes = job.get("classes")
    rows = []
    for i, m in enumerate(record["members"]):
        bad = unstable(m["final"], classes) and not m.get("diverged", False)
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
                "unstable": bad,
                # an unstable member's metrics are left out as a diverged member's are (null in its record)
                **({k: None for k in m["final"]} if bad else m["final"]),
                **_complexity(m),
            }
        )
    df = pd.DataFrame(rows)
    # a diverged member's metrics are null in its record: NaN here, left out of means and pairs
    metrics = [c for c in df.columns if c.endswith(("_loss", "_acc")) or c.startswith("gap_")]
    return df.astype({c: float for c in metrics})
