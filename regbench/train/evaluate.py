"""Evaluation: loss and accuracy of every member on whole splits, in eval mode (no dropout, running BN stats).

Train metrics are measured this way on the full training split too, never as a running average of training
losses, so the gap compares like with like.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from regbench.models.layers import Context

SPLITS = ("train", "val", "test")
COLUMNS = tuple(f"{s}_{m}" for s in SPLITS for m in ("loss", "acc"))  # order of the metrics tensor's columns

# Elements of a hidden layer's activations ([K, rows, 256-ish], or the model's eval_width per example) per
# evaluation chunk: bounds memory for large populations, and keeps a chunk's activations (4 MB) in cache.
# Evaluating the benchmark's 36 MLP members on MNIST-1D (2 CPU cores) takes 100 ms at 1 << 24 (64 MB), 53 ms at
# 1 << 20, 75 ms at 1 << 18; the CNN's 10 members (1 thread) 0.36-0.40 s by the 256 rule, 0.24-0.30 by its width.
_CHUNK_ELEMENTS = 1 << 20


@torch.no_grad()
def evaluate(model, splits, seeds: torch.Tensor, fast: bool = True, keep: dict | None = None) -> torch.Tensor:
    """[K, 6] tensor on the model's device, columns as COLUMNS. Performs no host synchronisation. fast=False: the
    model's plain forward (trainer.fast=false). keep: a dict to fill, on the way, with what the end of training
    also reads from these logits (train/complexity.py): "margins", [K, N_train], and with keep["log_probs"] set,
    "log_probs", the test split's [K, N_test, C] log-probabilities; one pass over the data instead of three."""
    ctx = Context(seeds=seeds, step=0, train=False, fast=fast)
    k = seeds.numel()
    cols = []
    for split in SPLITS:
        x, y = splits.split(split)
        n = len(y)
        rows = max(1, _CHUNK_ELEMENTS // (k * max(getattr(model, "eval_width", 256), x[0].numel())))
        losses = []  # per example, summed once at the end: a sum over chunks would round differently for each
        correct = torch.zeros(k, device=x.device)  # chunk size, and the chunk size depends on K
        kept = []
        for start in range(0, n, rows):
            xc, yc = x[start : start + rows], y[start : start + rows]
            logits = model(xc, ctx)  # [K, n, C]
            target = yc.expand(k, -1)
            losses.append(F.cross_entropy(logits.transpose(1, 2), target, reduction="none"))
            correct += (logits.argmax(-1) == target).sum(1)
            if keep is not None and split == "train":
                kept.append(margins(logits, target))
            elif keep is not None and split == "test" and keep.get("log_probs"):
                kept.append(logits.float().log_softmax(-1))
        cols += [torch.cat(losses, 1).sum(1) / n, correct / n]
        if kept:
            keep["margins" if split == "train" else "log_probs"] = torch.cat(kept, 1)
    return torch.stack(cols, dim=1)


def margins(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[K, n]: the true class's logit minus the largest other (negative where the member is wrong)."""
    logits = logits.float()
    true = logits.gather(2, target.unsqueeze(-1)).squeeze(-1)
    other = logits.scatter(2, target.unsqueeze(-1), float("-inf")).amax(2)
    return true - other
