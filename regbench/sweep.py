"""Sweep jobs as populations: the compatible jobs of a sweep batch train together, each baseline once.

Jobs are compatible when they share the dataset, the model and the trainer's schedule (everything in `trainer`
but the seeds and the progress display). Their members are pooled, a member wanted by several jobs (the baseline
of a seed, above all) trains once, and each job then takes back its own members' numbers: members never
interact, so these are the numbers the job would have produced alone. A pool larger than the memory budget is
split into several populations, and each of them trains batched, looped or in chunks as trainer.batching chooses
(train/batching.py).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from regbench import data, models, progress, regularizers
from regbench.config import MEMBER_KEYS, NOT_NUMBERS, Spec
from regbench.experiment import make_record, resolve_device, set_deterministic
from regbench.models.base import ModelHints
from regbench.models.layers import Context
from regbench.train.batching import merge, train_members
from regbench.train.engine import member_loss
from regbench.train.population import Member, members_for

# Not part of a job's schedule: members carry their own seeds, and the keys that never change the numbers may differ
# between the jobs of one population (it takes its first job's display and thread count).
PER_JOB = MEMBER_KEYS + NOT_NUMBERS
# torch's CPU threads when neither trainer.threads nor the launcher says: torch's own default (every core) made
# small-kernel training several times slower, and erratic, on a shared machine.
DEFAULT_THREADS = 1


def set_threads(trainer, allotted: int | None = None) -> int:
    """Give torch trainer.threads CPU threads, else what the launcher allots the job (submitit's cpus_per_task),
    else DEFAULT_THREADS; returns the count."""
    n = int(trainer.threads or allotted or DEFAULT_THREADS)
    torch.set_num_threads(n)
    return n


@dataclass
class Job:
    index: int
    cfg: DictConfig
    spec: Spec


def group_key(spec: Spec) -> str:
    trainer = {k: v for k, v in vars(spec.trainer).items() if k not in PER_JOB}
    return json.dumps([vars(spec.dataset), vars(spec.model), trainer], sort_keys=True, default=str)


def member_key(m: Member) -> str:
    return json.dumps([m.arm, m.seed, m.params()], sort_keys=True, default=str)


def member_bytes(spec: Spec, splits) -> int:
    """Memory one member needs while training: parameters, gradients and Adam's two moments, plus the
    activations autograd keeps for one minibatch (counted from a real forward pass of a one-member model)."""
    model = models.build(spec.model, splits.input_shape, splits.kind, splits.n_classes, [0], ModelHints.plain(1))
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    saved = 0

    def pack(t):
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    x = splits.x_train[: spec.trainer.batch_size].cpu().unsqueeze(0)
    y = splits.y_train[: spec.trainer.batch_size].cpu().unsqueeze(0)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        member_loss(model(x, Context(seeds=torch.zeros(1, dtype=torch.int64), train=True)), y)
    # saved activations and their gradients; dropout masks and batch statistics come on top, hence the margin
    return 4 * params + 3 * saved


def needs_autograd(m: Member) -> bool:
    """Whether one of the member's regularizers puts its whole population on autograd's step (batch norm)."""
    return any(regularizers.get(name).needs_autograd() for name in m.regularizers)


def apart(members: list[Member], wanted: list[list[int]], odd) -> tuple[list[Member], list[list[int]], int]:
    """Members reordered so those with odd(m) come last (and so train in populations of their own when the pool is
    split), the jobs' member indices remapped, and how many members come before the odd ones.

    A member that needs autograd (needs_autograd: batch norm) is such a member: in any member it puts the whole
    population on autograd's step instead of the MLP's hand-written one."""
    flags = [bool(odd(m)) for m in members]
    order = sorted(range(len(members)), key=flags.__getitem__)
    new = {old: pos for pos, old in enumerate(order)}
    return [members[i] for i in order], [[new[i] for i in idx] for idx in wanted], flags.count(False)


def pool(group: list[Job]) -> tuple[list[Member], list[list[int]], int]:
    """A group's members, each trained once however many jobs want it, with autograd's members (batch norm's)
    last; each job's member indices; how many members come before autograd's (apart)."""
    keys: dict[str, int] = {}
    wanted = []
    for job in group:
        wanted.append([keys.setdefault(member_key(m), len(keys)) for m in members_for(job.spec)])
    members = [None] * len(keys)
    for job, idx in zip(group, wanted):
        for m, i in zip(members_for(job.spec), idx):
            members[i] = m
    return apart(members, wanted, needs_autograd)


def train_jobs(jobs: list[Job], budget_bytes: int, around=None) -> Iterator[tuple[int, dict]]:
    """(job index, record) for every job, group by group as each group finishes.

    around(jobs): an optional context manager entered while a population trains, given the jobs with members in it
    (the launcher uses it to copy the population's log lines into those jobs' logs, and no other population's)."""
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        groups.setdefault(group_key(job.spec), []).append(job)
    for n, group in enumerate(groups.values(), 1):
        spec = group[0].spec
        set_threads(spec.trainer)
        set_deterministic(spec.trainer.deterministic)
        device = resolve_device(spec.trainer.device)
        splits = data.load(spec.dataset).to(device)
        members, wanted, plain = pool(group)
        size = max(1, budget_bytes // member_bytes(spec, splits))
        spans = [(s, min(s + size, hi)) for lo, hi in ((0, plain), (plain, len(members))) for s in range(lo, hi, size)]
        parts = []
        for start, stop in spans:
            chunk = members[start:stop]
            label = f"sweep group {n}/{len(groups)} ({len(group)} jobs), members {start + 1}-{stop}"
            bar = progress.choose(spec.trainer.progress, label)
            inside = [job for job, idx in zip(group, wanted) if any(start <= i < stop for i in idx)]
            with around(inside) if around is not None else contextlib.nullcontext():
                parts.append(train_members(splits, spec.model, spec.trainer, chunk, device, bar))
        pop = merge(parts)
        for job, idx in zip(group, wanted):
            yield (
                job.index,
                make_record(
                    job.cfg, job.spec, splits.sizes(), pop.select(idx), device, splits.n_classes, splits.y_test
                ),
            )


__all__ = [
    "Job",
    "apart",
    "group_key",
    "member_bytes",
    "member_key",
    "merge",
    "needs_autograd",
    "pool",
    "set_threads",
    "train_jobs",
]
