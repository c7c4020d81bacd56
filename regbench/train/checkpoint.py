"""Per-epoch checkpoints of a training population, so a long run killed part-way resumes where it was.

A checkpoint holds everything the rest of the run depends on: the member-batched model (parameters and running
statistics), the optimizer's state, which members are frozen or diverged, the minibatch-order generators, the
regularizers' own state, the history so far and the divergence flags. Per-member randomness is keyed by the step,
which the checkpoint keeps, so a resumed run takes the same steps as one never interrupted.

Written atomically (temporary file, fsync, rename); read with `torch.load(weights_only=True)`, which unpickles
tensors and plain containers only, never arbitrary objects.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from regbench.atomic import atomic_write

log = logging.getLogger("regbench")
FORMAT = "regbench.checkpoint/3"  # 2: dense weights [K, out, in], flat-buffer optimizer state; 3: a block a layer


@dataclass
class Checkpointing:
    path: Path
    every: int  # epochs between checkpoints
    key: str  # what the checkpoint must belong to (the run id); another key's checkpoint is ignored
    load: bool = True  # False: start afresh even when a checkpoint exists (a forced re-run)

    def due(self, epoch: int) -> bool:
        return epoch % self.every == 0


def save(ck: Checkpointing, state: dict) -> None:
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "key": ck.key, **state}, buf)
    atomic_write(ck.path, buf.getvalue())


def load(ck: Checkpointing | None, device) -> dict | None:
    """The saved state, or None (no checkpointing, no file, another run's file, or an unreadable one)."""
    if ck is None or not ck.load or not Path(ck.path).is_file():
        return None
    try:
        state = torch.load(ck.path, map_location=device, weights_only=True)
    except Exception as err:  # noqa: BLE001 - a bad checkpoint costs a fresh start, never the run
        log.warning("%s: unreadable checkpoint (%s); starting afresh", ck.path, err)
        return None
    if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("key") != ck.key:
        log.warning("%s: checkpoint of another run or an older format; starting afresh", ck.path)
        return None
    return state
