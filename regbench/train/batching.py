"""Batched or looped: train a population as one member-batched computation, or in chunks of fewer members.

Member batching is what makes the MLP fast (its hand-written batched step is several times a loop of single
members), but it is not free for every model: a grouped convolution over K*C channels can be slower per member
than K small ordinary ones. So, as cudnn.benchmark does for convolution algorithms, `trainer.batching=auto`
times a few training steps of each candidate chunk size (all members, one, one in between) on the real data and
model, once per machine, and trains in chunks of the size that was fastest per member-step. The answer is cached
in `paths.cache_home()/batching.json` under a key of everything that changes it (model, data shape, batch size,
members, regularizers, device, threads, torch version); `batched` and `loop` skip the measurement.

Members never interact (their seeds, initial weights, minibatch order and noise streams are their own), so the
chunking changes a member's numbers only within float tolerance (tests/test_batching.py checks it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import replace

import torch

from regbench import paths, regularizers
from regbench.atomic import atomic_write
from regbench.results import provenance
from regbench.train import denormals
from regbench.train.checkpoint import Checkpointing
from regbench.train.engine import PopulationResult, Training, train_population
from regbench.train.population import Member

log = logging.getLogger("regbench")

CACHE = "batching.json"
FORMAT = "regbench.batching/1"
# Pins what `auto` chooses ("batched" or "loop") without measuring: the test suite sets it so its numbers do not
# depend on how fast the machine happened to be; a user can set it where measuring is unwanted.
ENV = "REGBENCH_BATCHING"
# The measurement: a few warm-up steps (the first makes the optimizer's state, a CUDA graph is captured), then
# ROUNDS of timed steps, each at least one step and SECONDS long, at most MAX_STEPS: a fraction of a second for
# the MLP (a millisecond a step), bounded for a big model whose step takes a second (about ROUNDS + WARMUP steps).
WARMUP, ROUNDS, MAX_STEPS, SECONDS = 2, 3, 50, 0.05
# A smaller chunk must beat a larger one by more than this to be chosen: on a shared machine timings wobble by a few
# percent, and a coin toss between near-equal sizes would change a run's chunking (and its float rounding) for nothing
MARGIN = 0.05
# A size slower per member-step than the best by more than this after a round is not timed again: it cannot be
# chosen (MARGIN), and for a big model its rounds were most of the measurement (a ResNet-10's population of 10
# members takes seconds a step on a CPU core, where one member at a time wins by a third)
DROP = 0.5
_logged: set[str] = set()


def train_members(
    splits, model_cfg, trainer, members: list[Member], device, progress=None, ckpt=None
) -> PopulationResult:
    """Train `members` as engine.train_population would, in chunks of the size trainer.batching chooses, merged
    into one result. With several chunks each has its own checkpoint file beside `ckpt`'s (chunk_checkpoint)."""
    size = chunk_size(splits, model_cfg, trainer, members, device)
    k = len(members)
    spans = [(s, min(s + size, k)) for s in range(0, k, size)]
    if len(spans) == 1:
        return train_population(splits, model_cfg, trainer, members, device, progress, ckpt)
    parts = [
        train_population(splits, model_cfg, trainer, members[a:b], device, progress, chunk_checkpoint(ckpt, a, b, k))
        for a, b in spans
    ]
    return merge(parts)


def chunk_checkpoint(ckpt: Checkpointing | None, start: int, stop: int, k: int) -> Checkpointing | None:
    """Members start..stop-1 of k's own checkpoint: its own file, and a key that a different chunking (another
    machine's choice, another trainer.batching) does not match, so it starts that chunk afresh instead of loading
    another chunk's state."""
    if ckpt is None:
        return None
    path = ckpt.path.with_name(f"{ckpt.path.stem}.members-{start}-{stop}{ckpt.path.suffix}")
    return replace(ckpt, path=path, key=f"{ckpt.key}:members {start}-{stop} of {k}")


def merge(parts: list[PopulationResult]) -> PopulationResult:
    """One result over the members of several populations trained one after another."""
    rows, offset = [], 0
    for part in parts:
        rows += [{**r, "member": r["member"] + offset} for r in part.history]
        offset += len(part.members)
    return PopulationResult(
        members=[m for p in parts for m in p.members],
        final=torch.cat([p.final for p in parts]),
        frozen_at=[a for p in parts for a in p.frozen_at],
        diverged_at=[a for p in parts for a in p.diverged_at],
        history=rows,
        extras=[e for p in parts for e in p.extras],
        steps=max(p.steps for p in parts),
        epochs=max(p.epochs for p in parts),
        wall_time=sum(p.wall_time for p in parts),
        device=parts[0].device,
        denormals_flushed=all(p.denormals_flushed for p in parts),
    )


def chunk_size(splits, model_cfg, trainer, members: list[Member], device) -> int:
    """Members per chunk: all for `batched`, one for `loop`; for `auto` the measured (or cached) fastest."""
    k = len(members)
    mode = trainer.batching
    if mode == "auto" and os.environ.get(ENV) in ("batched", "loop"):
        mode = os.environ[ENV]
    # trainer.compile: every chunk would compile its own model, a cost the few timed steps do not see
    if mode == "batched" or k <= 1 or (mode == "auto" and trainer.compile):
        return max(k, 1)
    if mode == "loop":
        return 1
    key = cache_key(splits, model_cfg, trainer, members, device)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = paths.cache_home() / CACHE
    entries = read_cache(path)
    entry = entries.get(digest)
    if not (isinstance(entry, dict) and isinstance(entry.get("chunk"), int) and 1 <= entry["chunk"] <= k):
        timings = measure(splits, model_cfg, trainer, members, device, candidates(k))
        entry = {"chunk": fastest(timings), "key": key, "seconds_per_member_step": timings}
        try:  # re-read: another process may have added entries meanwhile (a lost one only costs a re-measure)
            atomic_write(
                path,
                json.dumps({"format": FORMAT, "entries": {**read_cache(path), digest: entry}}, indent=1, default=str),
            )
        except OSError as err:  # a read-only cache costs a measurement a run, never the run
            log.warning("%s: cannot cache the batching choice (%s)", path, err)
    if digest not in _logged:
        _logged.add(digest)
        per = ", ".join(f"{c}: {t * 1e3:.3g} ms" for c, t in dict(entry.get("seconds_per_member_step") or {}).items())
        log.info(
            "trainer.batching=auto: %d members in chunks of %d (%s); ms per member-step by chunk size: %s; cache %s",
            k, entry["chunk"], describe(entry["chunk"], k), per, path,
        )  # fmt: skip
    return entry["chunk"]


def fastest(timings: dict[int, float]) -> int:
    """The largest chunk size within MARGIN of the fastest per member-step."""
    best = min(timings.values())
    return max(c for c, t in timings.items() if t <= best * (1 + MARGIN))


def describe(size: int, k: int) -> str:
    return "batched" if size >= k else "loop" if size == 1 else "chunked"


def candidates(k: int) -> list[int]:
    """All members, one, and one size between (about sqrt(K)): the batched end first, so a tie keeps it."""
    mid = round(math.sqrt(k))
    return [k, *([mid] if 1 < mid < k else []), 1]


def read_cache(path) -> dict:
    """The cached entries; an unreadable, corrupt or foreign file counts as empty (and is rewritten whole)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("entries"), dict):
        return {}
    return data["entries"]


def cache_key(splits, model_cfg, trainer, members: list[Member], device) -> dict:
    """Everything the fastest chunk size depends on. The regularizers' names stand for the step's path (autograd
    or hand-written, extra layers, per-step noise); their strengths change the numbers, not the time."""
    device = torch.device(device)
    names = sorted({n for m in members for n in m.regularizers})
    return {
        "model": {k: v for k, v in sorted(vars(model_cfg).items())},
        "data": [list(splits.input_shape), splits.kind, splits.n_classes],
        "trainer": {k: getattr(trainer, k) for k in ("batch_size", "optimizer", "fast", "precision", "compile")},
        "cuda_graph": trainer.cuda_graph and device.type == "cuda",
        "members": len(members),
        "regularizers": names,
        "autograd": any(regularizers.get(n).needs_autograd() for n in names),
        # the GPU's or CPU's model (a home folder shared by a cluster's different nodes keeps one answer per model)
        "device": [device.type, provenance.device_name(device)],
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def measure(splits, model_cfg, trainer, members: list[Member], device, sizes: list[int]) -> dict[int, float]:
    """Seconds per member-step of a fresh population of each size (its last members: the regularized arm, which
    costs the most, rather than the baseline) over a few training steps on the real data. The sizes take turns,
    ROUNDS times, and each keeps its best round: a machine whose speed drifts (a shared one) is the same machine
    for every size, and a round slowed by a neighbour is not the one that counts. A size more than DROP slower than
    the best after a round sits out the rest (its figure is its best so far)."""
    cpu = torch.device(device).type == "cpu"

    def sync():
        if not cpu:
            torch.cuda.synchronize(device)

    with denormals.flushing(cpu and trainer.flush_denormals) as flushed:
        runs = {}
        for size in sizes:
            run = Training(splits, model_cfg, trainer, members[-size:], device, flushed)
            run.resume(None)
            runs[size] = (run, run.step_function(), run.schedule.epoch())
            for _ in range(WARMUP):
                _step(*runs[size])
        best = dict.fromkeys(sizes, math.inf)
        for _ in range(ROUNDS):
            for size, state in runs.items():
                if math.isfinite(best[size]) and best[size] > min(best.values()) * (1 + DROP):
                    continue
                sync()
                reps, t0 = 0, time.perf_counter()
                while reps == 0 or (reps < MAX_STEPS and time.perf_counter() - t0 < SECONDS):
                    _step(*state)
                    reps += 1
                    sync()
                best[size] = min(best[size], (time.perf_counter() - t0) / reps / size)
        return best


def _step(run, step, order) -> None:
    step(order[run.step % len(order)])
    run.step += 1


__all__ = ["CACHE", "ENV", "cache_key", "candidates", "chunk_size", "chunk_checkpoint", "merge", "train_members"]
