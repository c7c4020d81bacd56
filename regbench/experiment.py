"""The pure core: run_experiment(cfg) -> result dict. It knows nothing of the CLI or of Hydra's globals."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from regbench import data, progress
from regbench.config import Spec, to_container, validate_config
from regbench.errors import RunError
from regbench.results import provenance
from regbench.train.engine import train_population
from regbench.train.metrics import COLUMNS
from regbench.train.population import members_for


def resolve_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise RunError("trainer.device=cuda: no CUDA GPU is visible to torch; allowed here: auto, cpu")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def final_metrics(values: list[float]) -> dict:
    m = dict(zip(COLUMNS, values))
    m["gap_acc"] = m["train_acc"] - m["val_acc"]
    m["gap_loss"] = m["val_loss"] - m["train_loss"]
    return m


def run_experiment(cfg: DictConfig, spec: Spec | None = None) -> dict:
    """Train baseline and regularized members over the configured seeds; return the record (not yet written)."""
    spec = spec or validate_config(cfg)
    device = resolve_device(spec.trainer.device)
    splits = data.load(spec.dataset).to(device)
    members = members_for(spec)
    label = f"{spec.dataset.name}/{spec.model.name}/{'+'.join(spec.regularizers) or 'baseline'}"
    bar = progress.choose(spec.trainer.progress, label)
    pop = train_population(splits, spec.model, spec.trainer, members, device, bar)
    return make_record(cfg, spec, splits.sizes(), pop, device)


def make_record(cfg: DictConfig, spec: Spec, sizes: dict, pop, device) -> dict:
    """A job's record from its trained population (also a job's share of a larger sweep population)."""
    finals = pop.final.tolist()
    return {
        "format": "regbench.result/1",
        "job": {
            "dataset": spec.dataset.name,
            "model": spec.model.name,
            "regularizers": spec.regularizer_params(),
            "sizes": sizes,
        },
        "members": [
            {
                "member": i,
                "arm": m.arm,
                "seed": m.seed,
                "regularizers": m.params(),
                "final": final_metrics(finals[i]),
                "epochs": pop.epochs,
                "frozen_at_epoch": pop.frozen_at[i],
                "steps": pop.steps,
                **pop.extras[i],
            }
            for i, m in enumerate(pop.members)
        ],
        "wall_time_s": round(pop.wall_time, 3),
        "provenance": {**provenance.collect(device), "config": to_container(cfg)},
        "history": pop.history,
    }
