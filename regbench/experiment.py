"""The pure core: run_experiment(cfg) -> result dict. It knows nothing of the CLI or of Hydra's globals."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from omegaconf import DictConfig

from regbench import data, loggers, models, progress, regularizers
from regbench.config import Spec, to_container, validate_config
from regbench.errors import RunError, UsageError
from regbench.results import provenance, records, store
from regbench.train.batching import train_members
from regbench.train.checkpoint import Checkpointing
from regbench.train.evaluate import COLUMNS
from regbench.train.population import members_for


def resolve_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise RunError("trainer.device=cuda: no CUDA GPU is visible to torch; allowed here: auto, cpu")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def set_deterministic(on: bool) -> None:
    """CPU kernels are deterministic already; on CUDA some (atomics-based reductions, cuBLAS workspaces) are not."""
    if on:
        # cuBLAS reads this when its handle is created, so it must be set before the first CUDA matmul.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # Only when it changes: torch.use_deterministic_algorithms imports torch._inductor (and dynamo) to set inductor's
    # copy of the flag, 1.7 s the first time in a process, for a run that asks for the default (off)
    if torch.are_deterministic_algorithms_enabled() != on:
        torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = False


PLACES = {
    "dropout": "no layers that drop (nn.Dropout)",
    "input_dropout": "no input dropout",
    "batch_norm": "no normalization layers it can switch (nn.BatchNorm*)",
    "residual": "no residual blocks",
}


def check_kind(spec: Spec, kind: str, input_shape: tuple[int, ...] = (), n_classes: int = 0) -> None:
    """The model and every regularizer take data of this kind (a CNN or cutout needs a spatial axis: no tables),
    and the model has the places each regularizer acts on (stochastic depth needs residual blocks)."""
    model = models.get(spec.model.name).cls
    if kind not in model.kinds:
        fits = "|".join(name for name, e in models.MODELS.items() if kind in e.cls.kinds)
        raise UsageError(
            f"model={spec.model.name}: needs {' or '.join(model.kinds)} data, got {kind} data; use model={fits}"
        )
    for name in spec.regularizers:
        reg = regularizers.get(name)
        if kind not in reg.kinds:
            raise UsageError(f"regularizers.{name}: needs {' or '.join(reg.kinds)} data, got {kind} data")
    # asked whatever the regularizers: model=torch builds the user's module here, so a constructor that fails or
    # logits of the wrong shape are refused before any job starts
    offers = model.offers(spec.model, tuple(input_shape), kind, n_classes)
    for name, cfg in spec.regularizers.items():
        needs = regularizers.get(name).needs(cfg)
        if needs:
            missing = sorted(needs - offers)
            if missing:
                target = getattr(spec.model, "target", None)  # model=torch: the user's module, named
                label = f"model={spec.model.name}" + (f" (model.target={target})" if target else "")
                fits = "|".join(n for n, e in models.MODELS.items() if needs <= e.cls.offers(None, (), kind, 0))
                option = model.offered_with.get(missing[0])
                raise UsageError(
                    f"regularizers.{name}: {label} has {PLACES.get(missing[0], missing[0])} for it "
                    f"to act on"
                    + (f" ({option} gives it some)" if option else "")
                    + (f"; models that have: {fits}" if fits else "")
                )


def preflight(spec: Spec) -> None:
    """What can be checked before any job starts beyond the schemas: the device, the data, the batch size, and
    whether the model and regularizers take the data's kind.

    Loading the data here also turns a missing or unreadable data file into one line before anything runs; the
    training that follows in this process takes the loaded splits from data.load's cache.
    """
    resolve_device(spec.trainer.device)
    loggers.check(spec.loggers)
    splits = data.load(spec.dataset)
    n_train = splits.sizes()["train"]
    check_kind(spec, splits.kind, splits.input_shape, splits.n_classes)
    if spec.trainer.batch_size > n_train:
        raise UsageError(f"trainer.batch_size={spec.trainer.batch_size}: larger than the training split ({n_train})")


def final_metrics(values: list[float], diverged: bool = False) -> dict:
    """A diverged member's metrics are all null (its accuracy from NaN logits would be a number, and meaningless);
    null also keeps result.json valid JSON, which NaN would not."""
    m = dict(zip(COLUMNS, values))
    m["gap_acc"] = m["train_acc"] - m["val_acc"]
    m["gap_loss"] = m["val_loss"] - m["train_loss"]
    return {k: (None if diverged or not math.isfinite(v) else v) for k, v in m.items()}


def run_experiment(cfg: DictConfig, spec: Spec | None = None, folder: Path | None = None) -> dict:
    """Train baseline and regularized members over the configured seeds; return the record (not yet written).

    `folder`, the job's folder, is where checkpoints go when `trainer.checkpoint_every` is set.
    """
    spec = spec or validate_config(cfg)
    set_deterministic(spec.trainer.deterministic)
    device = resolve_device(spec.trainer.device)
    splits = data.load(spec.dataset).to(device)
    members = members_for(spec)
    rid = store.run_id(spec)
    ckpt = None
    if folder is not None and spec.trainer.checkpoint_every:
        ckpt = Checkpointing(Path(folder) / store.CHECKPOINT, spec.trainer.checkpoint_every, rid, spec.trainer.resume)
    label = f"{spec.dataset.name}/{spec.model.name}/{'+'.join(spec.regularizers) or 'baseline'}"
    bar = progress.choose(spec.trainer.progress, label)
    pop = train_members(splits, spec.model, spec.trainer, members, device, bar, ckpt)
    return make_record(cfg, spec, splits.sizes(), pop, device, splits.n_classes, splits.y_test)


def make_record(cfg: DictConfig, spec: Spec, sizes: dict, pop, device, classes: int | None = None, labels=None) -> dict:
    """A job's record from its trained population (also a job's share of a larger sweep population). `labels`: the
    test split's, kept beside the members' predictions when trainer.predictions is on (records.PREDICTIONS)."""
    rid = store.run_id(spec)
    finals = pop.final.tolist()
    kept = {"test_labels": labels.cpu().numpy()} if labels is not None and spec.trainer.predictions else {}
    return kept | {
        "format": records.FORMAT,
        "run_id": rid,
        "job": {
            "dataset": spec.dataset.name,
            "model": spec.model.name,
            "regularizers": spec.regularizer_params(),
            "sizes": sizes,
            "classes": classes,  # what chance accuracy is: the report judges unstable members by it
        },
        "members": [
            {
                "member": i,
                "arm": m.arm,
                "seed": m.seed,
                "regularizers": m.params(),
                "final": final_metrics(finals[i], pop.diverged_at[i] is not None),
                "epochs": pop.epochs,
                "frozen_at_epoch": pop.frozen_at[i],
                "diverged": pop.diverged_at[i] is not None,
                "diverged_at_epoch": pop.diverged_at[i],
                "steps": pop.steps,
                **pop.extras[i],
            }
            for i, m in enumerate(pop.members)
        ],
        "wall_time_s": round(pop.wall_time, 3),
        "provenance": {
            **provenance.collect(device),
            "denormals_flushed": pop.denormals_flushed,
            "config": to_container(cfg),
        },
        "history": pop.history,
    }
