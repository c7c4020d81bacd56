"""Member-batched layers: K independent networks held as one set of tensors with a leading member axis.

Dense activations travel as [K, B, F]; convolutional activations as [B, K*C, ...] so that one grouped convolution
(groups=K) runs all members. Every layer keeps members independent: no value of member j ever enters member k's
forward pass or gradient, which is what lets the sum of the members' losses be backpropagated at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from regbench import rng


@dataclass
class Context:
    """What a forward pass needs to know beyond its input: members' seeds (for randomness) and the step."""

    seeds: torch.Tensor  # [K] int64 on the model's device
    step: int | torch.Tensor = 0
    train: bool = False
    fast: bool = True  # False on the plain path (trainer.fast=false): models take none of their speed-only paths


def uniform_init(gens: list[torch.Generator], shape: tuple[int, ...], fan_in: int) -> torch.Tensor:
    """PyTorch's default Linear/Conv init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn per member from its own
    generator: members sharing a seed share initial weights, whatever population they sit in."""
    bound = 1.0 / math.sqrt(fan_in)
    return torch.stack([(torch.rand(shape, generator=g) * 2 - 1) * bound for g in gens])


class BatchedLinear(nn.Module):
    """K dense layers. Weights are [K, out, in], nn.Linear's layout: every product of the forward and backward
    pass then has a shape the BLAS handles at full speed, the output layer's narrow ones included (the [K, in,
    out] layout runs the 100->10 layer's products at a fifth of the speed)."""

    def __init__(self, gens: list[torch.Generator], fan_in: int, fan_out: int):
        super().__init__()
        # drawn as [in, out] and transposed: that draw order is what fixes a seed's initial weights
        weight = uniform_init(gens, (fan_in, fan_out), fan_in).transpose(1, 2).contiguous()
        self.weight = nn.Parameter(weight)  # [K, out, in]
        self.bias = nn.Parameter(uniform_init(gens, (1, fan_out), fan_in))  # [K, 1, out]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # one input shared by all members (evaluation): broadcast, no K copies of the data
            return torch.matmul(x, self.weight.transpose(1, 2)) + self.bias
        return torch.baddbmm(self.bias, x, self.weight.transpose(1, 2))

    def rows(self) -> torch.Tensor:
        """The weight as [K, units, fan_in], one row per output unit (a view)."""
        return self.weight


class BatchedConv(nn.Module):
    """K convolutions as one grouped convolution over [B, K*C_in, ...]."""

    def __init__(self, gens, dims: int, c_in: int, c_out: int, kernel: int, stride: int):
        super().__init__()
        self.k, self.dims, self.stride, self.padding = len(gens), dims, stride, kernel // 2
        shape = (c_out, c_in) + (kernel,) * dims
        fan_in = c_in * kernel**dims
        self.weight = nn.Parameter(uniform_init(gens, shape, fan_in).flatten(0, 1))  # [K*C_out, C_in, k...]
        self.bias = nn.Parameter(uniform_init(gens, (c_out,), fan_in).flatten())  # [K*C_out]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = F.conv1d if self.dims == 1 else F.conv2d
        return conv(x, self.weight, self.bias, self.stride, self.padding, groups=self.k)

    def rows(self) -> torch.Tensor:
        """The weight as [K, units, fan_in], one row per output channel (a view)."""
        return self.weight.view(self.k, self.weight.shape[0] // self.k, -1)


def member_span(mask: torch.Tensor) -> slice | None:
    """The members where `mask` holds as one slice when they are consecutive, else None. They usually are: a
    sweep's population lists each job's members together, so the members carrying a regularizer form a block
    that per-member work can be sliced to instead of being done for all and masked."""
    idx = torch.nonzero(mask.cpu()).flatten().tolist()
    if idx and idx == list(range(idx[0], idx[-1] + 1)):
        return slice(idx[0], idx[-1] + 1)
    return None


# Dropout masks are drawn this many steps ahead, in at most this much memory: one pass of the hash over several
# steps runs a dozen kernels once instead of every step (on 2 CPU cores, 60 us a draw instead of 110 for the
# benchmark's [12, 100, 100] masks); more steps do not pay, as the masks outgrow the cache.
MASK_STEPS = 8
MASK_BYTES = 4 << 20


class MemberDropout(nn.Module):
    """Inverted dropout with a probability per member ([K]); masks from the member's own seed and the step.

    A member with p=0 passes through unchanged, so baseline and dropout members share one code path. At
    evaluation it is the identity.
    """

    def __init__(self, p: torch.Tensor, stream: str):
        super().__init__()
        self.register_buffer("p", p.float(), persistent=False)
        self.stream = rng.stream_id(stream)
        # The hash that draws masks costs more than the layer's matmul: draw them only for the members that drop
        # (a sweep population holds many baseline and penalty-only members). Known at build time: no sync later.
        active = torch.nonzero(p > 0).flatten()
        self.everyone = active.numel() == p.numel()
        self.span = member_span(p > 0)
        self.register_buffer("active", active, persistent=False)
        drawn = p[active].float()
        self.register_buffer("drawn_p", drawn, persistent=False)
        self.register_buffer("drawn_threshold", rng.keep_threshold(drawn), persistent=False)
        self.register_buffer("drawn_scale", 1 / (1 - drawn), persistent=False)
        # (seeds, stream) for the drawn members only, or for all; rebuilt if the seeds tensor changes
        self._streams: dict[bool, tuple[torch.Tensor, rng.Stream]] = {}
        self._masks: tuple | None = None  # (stream, shape, first step, [steps, A, ...] multipliers) drawn ahead

    def _rng(self, seeds: torch.Tensor, subset: bool) -> rng.Stream:
        made = self._streams.get(subset)
        if made is None or made[0] is not seeds:
            made = self._streams[subset] = (seeds, rng.Stream(seeds[self.active] if subset else seeds, self.stream))
        return made[1]

    def draw(self, shape: tuple[int, ...], ctx: Context) -> torch.Tensor:
        """The multipliers of the members that drop, for a [K, B, ...] activation: [A, B, ...] (A = drawn_p's
        length), 0 or 1/(1-p). Read-only: with a Python step they are a view of masks drawn for several steps
        ahead (a mask is a function of seed, step and element only, so drawing ahead changes no bit), reused memory
        overwritten by the next draw."""
        shape = tuple(shape[1:])
        stream = self._rng(ctx.seeds, True)
        if not isinstance(ctx.step, int):  # a device counter (CUDA graph, torch.compile): this step only
            return stream.kept(ctx.step, shape, self.drawn_threshold, steps=1, value=self.drawn_scale)[0]
        m = self._masks
        if m is None or m[0] is not stream or m[1] != shape or not 0 <= ctx.step - m[2] < len(m[3]):
            steps = max(1, min(MASK_STEPS, MASK_BYTES // (4 * math.prod(shape) * len(self.drawn_p))))
            out = m[3] if m is not None and m[1] == shape else None  # the same shape: the same number of steps
            masks = stream.kept(ctx.step, shape, self.drawn_threshold, steps=steps, out=out, value=self.drawn_scale)
            m = self._masks = (stream, shape, ctx.step, masks)
        return m[3][ctx.step - m[2]]

    def apply_(self, x: torch.Tensor, drawn: torch.Tensor) -> torch.Tensor:
        """x *= the multipliers from draw() (or any factor broadcasting against them), in place, for the members
        that drop (x [K, B, ...])."""
        if self.span is not None:
            x[self.span].mul_(drawn)
        else:
            x.index_copy_(0, self.active, x.index_select(0, self.active).mul_(drawn))
        return x

    def rows(self, x: torch.Tensor) -> torch.Tensor | None:
        """The view of x ([K, ...]) over the members that drop when they are consecutive, else None: what apply_
        multiplies, for a caller that makes the view once and multiplies it every step."""
        return x[self.span] if self.span is not None else None

    def rescale_(self, x: torch.Tensor) -> torch.Tensor:
        """x *= 1/(1-p), in place, for the members that drop (x [K, B, ...]): the backward pass's factor where a unit
        was kept. Where one was dropped its activation is 0, so ReLU's gradient has zeroed it already; this reads
        no mask."""
        return self.apply_(x, self.drawn_scale.view(-1, *([1] * (x.dim() - 1))))

    def scale(self, shape: tuple[int, ...], ctx: Context) -> torch.Tensor:
        """The multiplier for all K members ([K, B, ...]): 1 for members that do not drop."""
        drawn = self.draw(shape, ctx)
        if self.everyone:
            return drawn
        return torch.ones((self.p.numel(), *shape[1:]), device=drawn.device).index_copy_(0, self.active, drawn)

    def forward(self, x: torch.Tensor, ctx: Context, member_axis: int = 0) -> torch.Tensor:
        if not ctx.train:
            return x
        if member_axis == 0:  # [K, B, ...]
            return x * self.scale(tuple(x.shape), ctx).to(x.dtype)
        # channel-folded layout [B, K*C, ...]: draw [K, B, C, ...] then fold members into channels
        b, kc = x.shape[:2]
        k = self.p.numel()
        shape = (b, kc // k) + tuple(x.shape[2:])
        u = self._rng(ctx.seeds, False).uniform(ctx.step, shape)  # [K, B, C, ...]
        p = self.p.view(-1, *([1] * len(shape)))
        keep = ((u >= p) / (1 - p)).transpose(0, 1).reshape(x.shape)
        return x * keep


class MemberBatchNorm(nn.Module):
    """Batch norm with separate statistics and affine parameters per member, on for the members in `enabled`.

    Members are folded into channels (K*C), so F.batch_norm's per-channel batch statistics are per member;
    running statistics serve at evaluation. Members with it off get their input back untouched.
    """

    def __init__(self, enabled: torch.Tensor, channels: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        k = enabled.numel()
        self.k, self.c, self.momentum, self.eps = k, channels, momentum, eps
        self.register_buffer("enabled", enabled.bool(), persistent=False)
        self.all_on = bool(enabled.all())
        self.weight = nn.Parameter(torch.ones(k * channels))
        self.bias = nn.Parameter(torch.zeros(k * channels))
        self.register_buffer("running_mean", torch.zeros(k * channels))
        self.register_buffer("running_var", torch.ones(k * channels))

    def follows(self, bias: torch.Tensor) -> None:
        """Zero the gradient of the preceding layer's bias for members with batch norm on.

        Batch norm subtracts the batch mean, so that bias has no effect and its exact gradient is zero; the computed
        one is rounding noise, which Adam's normalisation would turn into lr-sized random steps (and the noise
        differs with the population's size, breaking "a member alone equals the member in a population").
        """
        bias.register_hook(lambda g: g.reshape(self.k, -1).masked_fill(self.enabled.view(-1, 1), 0.0).view_as(g))

    def forward(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        dense = x.dim() == 3 and x.shape[0] == self.k and x.shape[2] == self.c  # [K, B, C]
        # conv activations already come as [B, K*C, ...]; dense ones fold to [B, K*C]
        folded = x.transpose(0, 1).reshape(x.shape[1], self.k * self.c) if dense else x
        out = F.batch_norm(
            folded,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            training=ctx.train,
            momentum=self.momentum,
            eps=self.eps,
        )
        if dense:
            out = out.view(x.shape[1], self.k, self.c).transpose(0, 1)
        if self.all_on:
            return out
        mask = (
            self.enabled.view(-1, 1, 1)
            if dense
            else self.enabled.repeat_interleave(self.c).view(1, -1, *([1] * (x.dim() - 2)))
        )
        return torch.where(mask, out, x)
