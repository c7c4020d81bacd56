"""Data augmentation chosen by the data's kind, done on the device over the whole [K, B, ...] batch at once.

At strength s (0 is off, 1 the reference), each training example gets, independently per member:
  sequences  (MNIST-1D's own transforms, in its order: mnist1d/transform.py scales, translates, then adds noise)
             amplitude scaled by 1 + 0.4 * s * (u - 0.5)   (MNIST-1D's scale_coeff is 0.4)
             circularly shifted by an integer in [-m, m], m = round(0.25 * s * length)   (np.roll, like its translate)
             jittered with iid N(0, (0.1 * s)^2) noise   (inputs are standardised)
  images     a random crop of the image padded with p = round(s * side / 8) zero pixels (4 of 32 in CIFAR
             practice), i.e. a shift by (dy, dx) in [-p, p]^2 with zero fill, then a horizontal flip with
             probability 1/2 when `flip` is on
  tables     iid N(0, (0.1 * s)^2) noise on every feature
Only training batches pass through it: evaluation sees the data as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from regbench import rng
from regbench.regularizers.base import Batch, Regularizer
from regbench.schema import param

STREAM = rng.stream_id("augment")
NOISE = rng.stream_id("augment.noise")
SCALE, SHIFT, JITTER, PAD = 0.4, 0.25, 0.1, 1 / 8


@dataclass
class AugmentConfig:
    strength: float = param(0.5, "0 is off, 1 the reference magnitudes (see the module's docstring)", ge=0.0, le=4.0)
    flip: bool = param(True, "images: flip horizontally with probability 1/2")


def roll_sequences(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """x [K, B, L] with each row circularly shifted right by shift[K, B] (np.roll per example)."""
    n = x.shape[-1]
    idx = (torch.arange(n, device=x.device) - shift.unsqueeze(-1)) % n
    return torch.gather(x, -1, idx)


def translate_images(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """x [K, B, C, H, W]: out[..., i, j] = x[..., i + dy, j + dx], zero outside; the crop of a zero-padded image."""
    h, w = x.shape[-2:]
    rows = torch.arange(h, device=x.device) + dy.unsqueeze(-1)  # [K, B, H]
    cols = torch.arange(w, device=x.device) + dx.unsqueeze(-1)  # [K, B, W]
    r = rows.clamp(0, h - 1).view(*rows.shape[:2], 1, h, 1).expand(*x.shape[:-1], 1).expand_as(x)
    out = torch.gather(x, -2, r)
    c = cols.clamp(0, w - 1).view(*cols.shape[:2], 1, 1, w).expand_as(x)
    out = torch.gather(out, -1, c)
    inside = ((rows >= 0) & (rows < h)).unsqueeze(-1) & ((cols >= 0) & (cols < w)).unsqueeze(-2)  # [K, B, H, W]
    return out * inside.unsqueeze(2)


class Augment(Regularizer):
    name = "augment"
    Config = AugmentConfig
    summary = "kind-aware augmentation: sequences shift/scale/jitter, images crop+flip, tables noise"
    singles = {"weak": {"strength": 0.25}, "mid": {"strength": 0.5}, "strong": {"strength": 1.0}}

    def __init__(self, configs, device="cpu"):
        super().__init__(configs, device)
        self.strength = self.values("strength")
        self.flip = torch.tensor([bool(c is not None and c.flip) for c in configs], device=self.device)

    def draw(self, seeds, step, shape: tuple[int, ...], kind: str) -> dict[str, torch.Tensor]:
        """The random parameters of one step's augmentation, each [K, B] (noise: the batch's shape)."""
        k, b = shape[:2]
        s = self.strength.to(seeds.device).view(-1, 1)
        u = rng.uniform(seeds, step, STREAM, (b, 3))
        if kind == "sequence":
            m = (SHIFT * s * shape[-1]).round()
            return {
                "scale": 1 + SCALE * s * (u[..., 0] - 0.5),
                "shift": (u[..., 1] * (2 * m + 1)).floor().long() - m.long(),
                "noise": JITTER * s.view(-1, 1, 1) * rng.normal(seeds, step, NOISE, tuple(shape[1:])),
            }
        if kind == "image":
            p = (s * shape[-1] * PAD).round()
            return {
                "dy": (u[..., 0] * (2 * p + 1)).floor().long() - p.long(),
                "dx": (u[..., 1] * (2 * p + 1)).floor().long() - p.long(),
                "flip": (u[..., 2] < 0.5) & self.flip.to(seeds.device).view(-1, 1) & (s > 0),
            }
        noise = rng.normal(seeds, step, NOISE, tuple(shape[1:]))
        return {"noise": JITTER * s.view(-1, *([1] * (len(shape) - 1))) * noise}

    def apply(self, x: torch.Tensor, d: dict[str, torch.Tensor], kind: str) -> torch.Tensor:
        if kind == "sequence":
            return roll_sequences(x * d["scale"].unsqueeze(-1), d["shift"]) + d["noise"]
        if kind == "image":
            x = translate_images(x, d["dy"], d["dx"])
            return torch.where(d["flip"].view(*d["flip"].shape, 1, 1, 1), x.flip(-1), x)
        return x + d["noise"]

    def transform(self, batch, ctx):
        d = self.draw(ctx.seeds, ctx.step, tuple(batch.x.shape), batch.kind)
        return Batch(self.apply(batch.x, d, batch.kind), batch.y, batch.n_classes, batch.kind)
