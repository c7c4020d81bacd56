"""Cutout (DeVries and Taylor, 2017) for images, and its analogue for sequences: a masked window.

Images: a square of side round(size * image side), centred at a random pixel (clipped at the borders), is set to
0 — the training mean, inputs being standardised. Sequences: a window of round(size * length) consecutive samples
at a random position is set to 0. Tables have no spatial structure to mask: refused. One mask per example, drawn
per member; evaluation sees whole inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from regbench import rng
from regbench.errors import UsageError
from regbench.regularizers.base import Batch, Regularizer
from regbench.schema import param

STREAM = rng.stream_id("cutout")


@dataclass
class CutoutConfig:
    size: float = param(0.25, "side of the square (images) or the window (sequences), as a fraction", gt=0.0, le=1.0)


def window(pos: torch.Tensor, start: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """[..., n] bool: positions pos[n] inside [start, start + length), start/length shaped [...]."""
    return (pos >= start.unsqueeze(-1)) & (pos < (start + length).unsqueeze(-1))


class Cutout(Regularizer):
    name = "cutout"
    Config = CutoutConfig
    summary = "mask a random square (images) or window (sequences) of each training input"
    singles = {"weak": {"size": 0.1}, "mid": {"size": 0.25}, "strong": {"size": 0.4}}
    kinds = ("sequence", "image")

    def __init__(self, configs, device="cpu"):
        super().__init__(configs, device)
        self.size = self.values("size")

    def mask(self, seeds, step, shape: tuple[int, ...], kind: str) -> torch.Tensor:
        """[K, B, ...] bool, True where the input is cut out; shape is the batch's [K, B, ...]."""
        k, b = shape[:2]
        u = rng.uniform(seeds, step, STREAM, (b, 2))
        device = u.device
        if kind == "sequence":
            n = shape[-1]
            length = (self.size.to(device) * n).round() * self.active.to(device)  # [K]
            start = (u[..., 0] * (n - length.view(-1, 1) + 1)).floor()  # [K, B], the window fits
            return window(torch.arange(n, device=device), start, length.view(-1, 1).expand(k, b))
        if kind == "image":
            h, w = shape[-2:]
            side = (self.size.to(device) * min(h, w)).round().clamp_min(1) * self.active.to(device)
            side = side.view(-1, 1).expand(k, b)
            cy, cx = (u[..., 0] * h).floor(), (u[..., 1] * w).floor()  # centre anywhere: clipped at borders
            rows = window(torch.arange(h, device=device), cy - (side // 2), side)  # [K, B, H]
            cols = window(torch.arange(w, device=device), cx - (side // 2), side)  # [K, B, W]
            m = rows.unsqueeze(-1) & cols.unsqueeze(-2)  # [K, B, H, W]
            return m.view(k, b, *([1] * (len(shape) - 4)), h, w).expand(shape)
        raise UsageError(f"regularizers.cutout: needs sequence or image data, got {kind} data")

    def transform(self, batch, ctx):
        m = self.mask(ctx.seeds, ctx.step, tuple(batch.x.shape), batch.kind)
        return Batch(batch.x.masked_fill(m, 0.0), batch.y, batch.n_classes, batch.kind)
