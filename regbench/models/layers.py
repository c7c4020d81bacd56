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


def uniform_init(gens: list[torch.Generator], shape: tuple[int, ...], fan_in: int) -> torch.Tensor:
    """PyTorch's default Linear/Conv init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn per member from its own
    generator: members sharing a seed share initial weights, whatever population they sit in."""
    bound = 1.0 / math.sqrt(fan_in)
    return torch.stack([(torch.rand(shape, generator=g) * 2 - 1) * bound for g in gens])


class BatchedLinear(nn.Module):
    def __init__(self, gens: list[torch.Generator], fan_in: int, fan_out: int):
        super().__init__()
        self.weight = nn.Parameter(uniform_init(gens, (fan_in, fan_out), fan_in))  # [K, in, out]
        self.bias = nn.Parameter(uniform_init(gens, (1, fan_out), fan_in))  # [K, 1, out]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # one input shared by all members (evaluation): broadcast, no K copies of the data
            return torch.matmul(x, self.weight) + self.bias
        return torch.baddbmm(self.bias, x, self.weight)


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


class MemberDropout(nn.Module):
    """Inverted dropout with a probability per member ([K]); masks from the member's own seed and the step.

    A member with p=0 passes through unchanged (u >= 0 always holds), so baseline and dropout members share one
    code path. At evaluation it is the identity.
    """

    def __init__(self, p: torch.Tensor, stream: str):
        super().__init__()
        self.register_buffer("p", p.float(), persistent=False)
        self.stream = rng.stream_id(stream)

    def forward(self, x: torch.Tensor, ctx: Context, member_axis: int = 0) -> torch.Tensor:
        if not ctx.train:
            return x
        if member_axis == 0:  # [K, B, ...]
            u = rng.uniform(ctx.seeds, ctx.step, self.stream, tuple(x.shape[1:]))
            p = self.p.view(-1, *([1] * (x.dim() - 1)))
            return x * (u >= p) / (1 - p)
        # channel-folded layout [B, K*C, ...]: draw [K, B, C, ...] then fold members into channels
        b, kc = x.shape[:2]
        k = self.p.numel()
        shape = (b, kc // k) + tuple(x.shape[2:])
        u = rng.uniform(ctx.seeds, ctx.step, self.stream, shape)  # [K, B, C, ...]
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
