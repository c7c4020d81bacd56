"""Records with known numbers, written the way `regbench run` writes them, for the report's tests."""

from __future__ import annotations

from pathlib import Path

from regbench.experiment import final_metrics
from regbench.results import records
from regbench.train.evaluate import COLUMNS


def metrics(train_acc: float, val_acc: float, test_acc: float = 0.5) -> dict:
    """Final metrics with losses derived from the accuracies, so every column is known."""
    values = dict(
        train_loss=1 - train_acc,
        train_acc=train_acc,
        val_loss=2 - val_acc,
        val_acc=val_acc,
        test_loss=2 - test_acc,
        test_acc=test_acc,
    )
    return final_metrics([values[c] for c in COLUMNS])


def write(
    folder: Path,
    members: list[tuple[str, int, dict, dict]],
    dataset="mnist1d",
    model="mlp",
    epochs=2,
    device="cpu",
    history=True,
    diverged=(),
    classes=None,
) -> Path:
    """members: (arm, seed, regularizers, final metrics). history: two epochs per member, ending at the finals.
    diverged: indices of members recorded as diverged (null final metrics, NaN history). classes: job.classes."""
    regs = next((r for _, _, r, _ in members if r), {})
    config = {
        "dataset": {"name": dataset, "num_samples": 600},
        "model": {"name": model, "width": 100},
        "trainer": {"epochs": epochs, "lr": 0.01, "seeds": 2, "seed": 0, "progress": "off", "device": "auto"},
        "regularizers": regs,
    }
    rows = []
    if history:
        for epoch in (1, 2):
            for i, (arm, seed, _, final) in enumerate(members):
                scale = epoch / 2
                rows.append(
                    {
                        "member": i,
                        "arm": arm,
                        "seed": seed,
                        "epoch": epoch,
                        "step": epoch * 4,
                        **{c: float("nan") if i in diverged else final[c] * scale for c in COLUMNS},
                    }
                )
    result = {
        "format": records.FORMAT,
        "job": {"dataset": dataset, "model": model, "regularizers": regs, "sizes": {}}
        | ({} if classes is None else {"classes": classes}),
        "members": [
            {
                "member": i,
                "arm": arm,
                "seed": seed,
                "regularizers": r,
                "final": {k: None for k in final} if i in diverged else final,
                "epochs": epochs,
                "frozen_at_epoch": 1 if i in diverged else None,
                "diverged": i in diverged,
                "steps": 8,
            }
            for i, (arm, seed, r, final) in enumerate(members)
        ],
        "wall_time_s": 1.0,
        "provenance": {"device": device, "config": config},
        "history": rows,
    }
    return records.save(result, folder)


def job(
    folder: Path,
    name: str,
    params: dict,
    base: list[tuple[float, float, float]],
    reg: list[tuple[float, float, float]],
    **kw,
) -> Path:
    """A record of baseline and one regularized arm, seeds 0..n-1, accuracies (train, val, test) per seed."""
    regs = {name: params}
    members = [("baseline", s, {}, metrics(*b)) for s, b in enumerate(base)]
    members += [(name, s, regs, metrics(*r)) for s, r in enumerate(reg)]
    return write(folder, members, **kw)
