"""The composed Hydra config, validated group by group into typed specs before anything trains.

Schemas are plain dataclasses checked by `regbench.schema.validate` rather than registered in Hydra's ConfigStore:
a multi-select group (`regularizers=[l2,dropout]`) and per-name dataset/model schemas need a schema chosen by the
option's name, which ConfigStore's one-schema-per-node cannot express. The effect users see is the same: a wrong
key, type or range fails before training with the key named.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from regbench.errors import UsageError
from regbench.schema import param, validate

MAX_EPOCHS = 100_000
MAX_STEPS = 10_000_000
# Member seeds live in an int64 tensor (the engine's seeds, the dropout streams' keys): 2^62 keeps seed + seeds - 1
# far inside int64 whatever the seeds count, and is well below what torch.Generator.manual_seed takes (2^64 - 1).
MAX_SEED = 2**62


@dataclass
class TrainerConfig:
    optimizer: str = param("adam", "optimizer", choices=["adam", "sgd"])
    lr: float = param(1e-2, "learning rate", gt=0.0, le=10.0)
    momentum: float = param(0.9, "SGD momentum (ignored by adam)", ge=0.0, lt=1.0)
    batch_size: int = param(100, "examples per minibatch", ge=1)
    # Caps on the budget: a typo such as epochs=1e9 would otherwise run for ever rather than fail at once.
    epochs: int = param(100, "passes over the training split (at most 100000)", ge=1, le=MAX_EPOCHS)
    steps: int | None = param(None, "optimizer steps; overrides epochs when set (at most 10000000)", ge=1, le=MAX_STEPS)
    eval_every: int = param(1, "evaluate every this many epochs (and after the last step)", ge=1)
    device: str = param("auto", "auto picks CUDA when present", choices=["auto", "cpu", "cuda"])
    precision: str = param(
        "fp32", "bf16: autocast matmuls to bfloat16 (weights and optimizer stay fp32)", choices=["fp32", "bf16"]
    )
    compile: bool = param(False, "torch.compile the model (CUDA: with CUDA graphs); pays off for long runs")
    cuda_graph: bool = param(True, "on CUDA, capture the training step once and replay it (not with compile)")
    flush_denormals: bool = param(
        True,
        "on the CPU, flush denormal floats to zero on every thread; false: IEEE gradual underflow (slow on many CPUs)",
    )
    seeds: int = param(
        3, "seeds per arm (each seed pairs a baseline and a regularized member)", ge=1, le=10000, members=True
    )
    seed: int = param(0, "first seed; seeds are seed, seed+1, ... (at most 2^62)", ge=0, le=MAX_SEED, members=True)
    progress: str = param(
        "auto",
        "auto: a live bar on a terminal, log lines otherwise",
        choices=["auto", "bar", "log", "off"],
        numbers=False,
    )
    deterministic: bool = param(
        False, "deterministic GPU kernels (torch.use_deterministic_algorithms, cuDNN, cuBLAS); CPU always is"
    )
    resume: bool = param(
        True, "skip the job when its folder holds a complete record; resume from a checkpoint", numbers=False
    )
    checkpoint_every: int | None = param(
        None, "save a checkpoint every this many epochs (none: never)", ge=1, numbers=False
    )
    threads: int | None = param(
        None,
        "torch CPU threads per job; null: the launcher's cpus_per_task, else 1 (more threads barely help small "
        "members, and several-fold hurt on a machine shared by jobs: docs/performance.md)",
        ge=1,
        numbers=False,
    )
    predictions: bool = param(
        False,
        "keep every member's test-split log-probabilities (predictions.npz, float16) for the report's bias-variance "
        "decomposition",
        later=True,
    )
    fast: bool = param(
        True,
        "the fast path: hand-written steps, one flat fused optimizer, CUDA graphs, compile when asked; false: eager "
        "autograd and torch.optim (the same members, within float tolerance)",
        later=True,
    )
    batching: str = param(
        "auto",
        "auto: train the members batched, one at a time or in chunks, whichever a short measurement (cached per "
        "machine) found fastest; batched: all as one population; loop: one member at a time (the same numbers, "
        "within float tolerance)",
        choices=["auto", "batched", "loop"],
        later=True,
    )


# Said once, on the fields (schema.param): the run id, a sweep's pooling and the report's grouping leave these out.
NOT_NUMBERS = tuple(f.name for f in fields(TrainerConfig) if not f.metadata["numbers"])  # shown, saved, scheduled
MEMBER_KEYS = tuple(f.name for f in fields(TrainerConfig) if f.metadata["members"])  # which seeds run


@dataclass
class Spec:
    """A validated job: what to train and how. `regularizers` keeps the composed order."""

    dataset: Any
    model: Any
    regularizers: dict[str, Any]
    trainer: TrainerConfig
    loggers: dict[str, Any] = field(default_factory=dict)  # where a finished job is also sent (regbench/loggers)

    def regularizer_params(self) -> dict[str, dict]:
        return {name: dict(vars(c)) for name, c in self.regularizers.items()}


TOP_LEVEL = ("dataset", "model", "regularizers", "trainer", "logger")


def _group(cfg: DictConfig, key: str, registry_get) -> Any:
    node = cfg.get(key)
    if node is None or "name" not in node:
        raise UsageError(f"{key}: missing; choose one with {key}=NAME (see `regbench list`)")
    entry = registry_get(node["name"])
    return validate(node, entry.schema, key)


def validate_config(cfg: DictConfig) -> Spec:
    try:
        return _validate_config(cfg)
    except OmegaConfBaseException as e:  # an interpolation that points nowhere, or at itself
        key = getattr(e, "full_key", None) or ""
        node = OmegaConf.to_container(cfg, resolve=False)
        for part in key.split(".") if key else []:
            node = node.get(part) if isinstance(node, dict) else None
        why = str(e).splitlines()[0]
        raise UsageError(f"{key}={node}: {why[:1].lower()}{why[1:]}" if key else why) from None


def _validate_config(cfg: DictConfig) -> Spec:
    # the registries import torch: imported here, a report or `--cfg job` can read TrainerConfig without it
    from regbench import data, loggers, models, regularizers

    unknown = [k for k in cfg if k not in TOP_LEVEL and k != "hydra"]
    if unknown:
        raise UsageError(f"{unknown[0]}: unknown top-level key; allowed: {', '.join(TOP_LEVEL)}")
    dataset = _group(cfg, "dataset", data.get)
    model = _group(cfg, "model", models.get)
    regs = {}
    for name, node in (cfg.get("regularizers") or {}).items():
        regs[name] = validate(node, regularizers.get(name).Config, f"regularizers.{name}")
    trainer = validate(cfg.get("trainer"), TrainerConfig, "trainer")
    logs = {
        name: validate(node, loggers.get(name).schema, f"logger.{name}")
        for name, node in (cfg.get("logger") or {}).items()
    }
    return Spec(dataset, model, regs, trainer, logs)


def to_container(cfg: DictConfig) -> dict:
    """The resolved config without Hydra's own node: what a record stores as its provenance."""
    out = OmegaConf.to_container(cfg, resolve=True)
    out.pop("hydra", None)
    return out
