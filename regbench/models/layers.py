"""Member-batched layers: K independent networks held as one set of tensors with a leading member axis.

Dense activations travel as [K, B, F]; convolutional ones member-major and channels-last, [K, B, *S, C], so that a
convolution of all members is one batched matrix product over their patches. Every layer keeps members independent:
no value of member j ever enters member k's forward pass or gradient, which is what lets the sum of the members'
losses be backpropagated at once.
"""

from __future__ import annotations

import itertools
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


def plan(size: tuple[int, ...], kernel: int, stride: int, pad: int) -> tuple:
    """The blocks of output positions a convolution over `size` is computed in: ((first, end) positions, (first,
    end) taps) per axis. One block of every position and tap, unless the padding would be most of the work: then
    positions are grouped by the taps that fall inside the input (the edges of each axis apart from its middle),
    and each block reads only those. Digits' 8x8 images shrink to 4x4 and 2x2, where 51% and 84% of a full window
    is padding: the products skip the zeros (which add nothing to a sum: the result differs only in rounding)."""
    axes = []
    for n in size:
        segments: list[list] = []
        for o in range((n + 2 * pad - kernel) // stride + 1):
            taps = (max(0, pad - o * stride), min(kernel, n + pad - o * stride))
            if segments and segments[-1][1] == taps:
                segments[-1][0][1] = o + 1
            else:
                segments.append([[o, o + 1], taps])
        axes.append([((o0, o1), taps) for (o0, o1), taps in segments])
    blocks = list(itertools.product(*axes))
    full = math.prod(seg[-1][0][1] * kernel for seg in axes)
    kept = sum(math.prod((o1 - o0) * (t1 - t0) for (o0, o1), (t0, t1) in b) for b in blocks)
    if kept > full // 2:
        return ((tuple((0, seg[-1][0][1]) for seg in axes), ((0, kernel),) * len(size)),)
    return tuple((tuple(p for p, _ in b), tuple(t for _, t in b)) for b in blocks)


class Patches(torch.autograd.Function):
    """im2col for channels-last input [..., *S, C], by blocks of output positions (see plan): per block
    [..., *positions, taps * C], each position's window over the zero-padded input, taps outermost and channels
    innermost.

    In that order a window's rows are runs of contiguous floats (the whole window, in 1-D), so the forward pass is
    one copy of long runs, and the backward pass adds whole windows too: every few positions' windows do not overlap
    (every third at kernel 5, stride 2), so each such set is one add into a strided view of the padded gradient.
    Tensor.unfold's (C, k) order and its generic backward kernel took twice as long (on digits, unfold_backward
    alone was a third of a step), and an add per tap, of runs of C, a seventh of MNIST-1D's step."""

    @staticmethod
    def forward(ctx, x, blocks: tuple, dims: int, stride: int, pad: int):
        ctx.meta = (tuple(x.shape), blocks, dims, stride, pad)
        return im2col(x, blocks, dims, stride, pad)

    @staticmethod
    def backward(ctx, *grads):
        return col2im(grads, *ctx.meta), None, None, None, None


def padded_shape(shape: tuple[int, ...], dims: int, pad: int) -> tuple[int, ...]:
    """[..., *S, C] with each of the `dims` spatial axes S grown by `pad` on both sides."""
    nl = len(shape) - 1 - dims
    return (*shape[:nl], *(n + 2 * pad for n in shape[nl:-1]), shape[-1])


def im2col(
    x: torch.Tensor, blocks: tuple, dims: int, stride: int, pad: int, padded=None, outs=None
) -> tuple[torch.Tensor, ...]:
    """Patches' forward: per block, [..., *positions, taps * C]. Into reused memory when given: `padded`, of
    padded_shape, whose border is zero (only the inside is written), and `outs`, one contiguous tensor per block."""
    nl = x.dim() - 1 - dims  # leading axes (members, batch)
    lead, size = x.shape[:nl], x.shape[nl:-1]
    padded = x.new_zeros(padded_shape(tuple(x.shape), dims, pad)) if padded is None else padded
    padded[(..., *(slice(pad, pad + n) for n in size), slice(None))] = x
    c, st = x.shape[-1], padded.stride()
    made = []
    for b, (positions, taps) in enumerate(blocks):
        start = sum((o0 * stride + t0) * st[nl + d] for d, ((o0, _), (t0, _)) in enumerate(zip(positions, taps)))
        windows = padded.as_strided(
            (*lead, *(o1 - o0 for o0, o1 in positions), *(t1 - t0 for t0, t1 in taps), c),
            (*st[:nl], *(st[nl + d] * stride for d in range(dims)), *st[nl : nl + dims], 1),
            padded.storage_offset() + start,
        )
        if outs is None:
            made.append(windows.contiguous().view(*windows.shape[: nl + dims], -1))
        else:
            made.append(outs[b].view(windows.shape).copy_(windows).view(outs[b].shape))
    return tuple(made)


def col2im(grads, shape: tuple[int, ...], blocks: tuple, dims: int, stride: int, pad: int, padded=None):
    """Patches' backward: the blocks' patch gradients added back into the input's shape; a view of the zero-padded
    sum, `padded` (of padded_shape, zeroed here) when given."""
    nl = len(shape) - 1 - dims
    size, c = shape[nl:-1], shape[-1]
    padded = grads[0].new_zeros(padded_shape(shape, dims, pad)) if padded is None else padded.zero_()
    st = padded.stride()
    for grad, (positions, taps) in zip(grads, blocks):
        # Every `every`-th position's windows do not overlap: each such set is one add of whole window rows
        # (runs of taps*C floats) into a strided view, instead of an add per tap of runs of C.
        span = [t1 - t0 for t0, t1 in taps]
        every = [-(-n // stride) for n in span]
        grad = grad.reshape(*grad.shape[:-1], *span, c)
        for first in itertools.product(*(range(min(e, o1 - o0)) for e, (o0, o1) in zip(every, positions))):
            src = grad[(..., *(slice(f, None, e) for f, e in zip(first, every)), *(slice(None),) * (dims + 1))]
            start = sum(((o0 + f) * stride + t0) * st[nl + d] for d, ((o0, _), (t0, _), f) in
                        enumerate(zip(positions, taps, first)))  # fmt: skip
            dst = padded.as_strided(
                src.shape,
                (*st[:nl], *(st[nl + d] * stride * every[d] for d in range(dims)), *st[nl : nl + dims], 1),
                padded.storage_offset() + start,
            )
            dst.add_(src)
    return padded[(..., *(slice(pad, pad + n) for n in size), slice(None))]


class BatchedConv(nn.Module):
    """K convolutions over member-major, channels-last activations [K, B, *S, C_in] -> [K, B, *S_out, C_out], or a
    shared input [N, *S, C_in] (evaluation) -> [K, N, *S_out, C_out].

    Computed as im2col (Patches) and a batched matrix product, [K, B*S_out, k^d*C_in] patches against
    [K, k^d*C_in, C_out] weights: on the CPU a grouped convolution (groups=K) of these small layers (25 channels)
    is slower (see bench/conv_bench.py), and the channels-last layout makes every layer's patches one copy with no
    transposes between layers. Parameters keep nn.Conv's layout, [K*C_out, C_in, k...], and draw order: a seed's
    initial weights do not move.
    """

    def __init__(self, gens, dims: int, c_in: int, c_out: int, kernel: int, stride: int):
        super().__init__()
        self.k, self.dims, self.stride, self.padding = len(gens), dims, stride, kernel // 2
        self.kernel, self.c_in, self.c_out = kernel, c_in, c_out
        fan_in = c_in * kernel**dims
        shape = (c_out, c_in) + (kernel,) * dims
        self.weight = nn.Parameter(uniform_init(gens, shape, fan_in).flatten(0, 1))  # [K*C_out, C_in, k...]
        self.bias = nn.Parameter(uniform_init(gens, (c_out,), fan_in).flatten())  # [K*C_out]
        self._plans: dict[tuple[int, ...], tuple] = {}  # by input size

    def blocks_for(self, size: tuple[int, ...]) -> tuple:
        """The plan of output blocks for an input of this spatial size (see plan), made once per size."""
        blocks = self._plans.get(size)
        if blocks is None:
            blocks = self._plans[size] = plan(size, self.kernel, self.stride, self.padding)
        return blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = self.dims
        blocks = self.blocks_for(tuple(x.shape[x.dim() - 1 - dims : -1]))
        if x.dim() == dims + 2:  # [N, *S, C], the same input for every member (evaluation)
            return self._shared(x, blocks)
        return ConvProduct.apply(x, self.weight, self.bias, self, blocks)

    def block_weights(self, weight: torch.Tensor, blocks: tuple) -> list[torch.Tensor]:
        """Per block, the weight's fan-in in the patches' order, taps outermost: [K, C_out, taps * C_in] (small
        copies)."""
        w = weight.view(self.k, self.c_out, self.c_in, *(self.kernel,) * self.dims)
        return [w[(..., *(slice(t0, t1) for t0, t1 in taps))].movedim(2, -1).reshape(self.k, self.c_out, -1)
                for _, taps in blocks]  # fmt: skip

    def assemble(self, ys: list[torch.Tensor], blocks: tuple) -> torch.Tensor:
        """The blocks' outputs [..., *positions, C_out] as one [..., *S_out, C_out]."""
        if len(ys) == 1:
            return ys[0]
        out_size = tuple(o1 for o0, o1 in blocks[-1][0])
        lead = ys[0].shape[: ys[0].dim() - 1 - self.dims]
        out = ys[0].new_empty(*lead, *out_size, self.c_out)
        for y, (positions, _) in zip(ys, blocks):
            out[(..., *(slice(o0, o1) for o0, o1 in positions), slice(None))] = y
        return out

    def _shared(self, x: torch.Tensor, blocks: tuple) -> torch.Tensor:
        """One product per block against all members' weights side by side: no K copies of the input."""
        k, c_out = self.k, self.c_out
        bias = self.bias.view(k, 1, c_out)
        ys = []
        for h, wb in zip(Patches.apply(x, blocks, self.dims, self.stride, self.padding),
                         self.block_weights(self.weight, blocks)):  # fmt: skip
            y = h.reshape(-1, h.shape[-1]) @ wb.permute(2, 0, 1).reshape(-1, k * c_out)
            ys.append((y.view(-1, k, c_out).transpose(0, 1) + bias).view(k, *h.shape[:-1], c_out))
        return self.assemble(ys, blocks)

    def rows(self) -> torch.Tensor:
        """The weight as [K, units, fan_in], one row per output channel (a view)."""
        return self.weight.view(self.k, self.weight.shape[0] // self.k, -1)


class ConvProduct(torch.autograd.Function):
    """BatchedConv on member batches [K, B, *S, C_in]: per block of output positions (plan), im2col patches P
    [K, M, taps * C_in] times the block's weights W [K, C_out, taps * C_in], plus the bias.

    One node rather than Patches and a baddbmm through autograd, for the backward's layouts: autograd's
    weight gradient of baddbmm is P^T G, [K, L, M] against [K, M, C_out]; here it is G^T P where the fan-in L is
    at least C_out, which the BLAS runs 1.3-1.4x faster at the MNIST-1D CNN's layers 2 and 3 (L 125, C_out 25;
    `python bench/conv_bench.py --products`; its first layer, L 5, keeps P^T G, 2-3x faster there), and lands in the
    weight's own layout. The forward product and the input's gradient are autograd's."""

    @staticmethod
    def forward(ctx, x, weight, bias, conv: BatchedConv, blocks: tuple):
        k, c_out = conv.k, conv.c_out
        patches = im2col(x, blocks, conv.dims, conv.stride, conv.padding)
        wbs = conv.block_weights(weight, blocks)
        b = bias.view(k, 1, c_out)
        ys = [torch.baddbmm(b, h.view(k, -1, h.shape[-1]), wb.transpose(1, 2)).view(*h.shape[:-1], c_out)
              for h, wb in zip(patches, wbs)]  # fmt: skip
        ctx.save_for_backward(*patches, *wbs)
        ctx.meta = (conv, blocks, tuple(x.shape))
        return conv.assemble(ys, blocks)

    @staticmethod
    def backward(ctx, grad):
        conv, blocks, shape = ctx.meta
        k, c_out, c_in, dims = conv.k, conv.c_out, conv.c_in, conv.dims
        saved = ctx.saved_tensors
        patches, wbs = saved[: len(blocks)], saved[len(blocks) :]
        whole = len(blocks) == 1 and all(t == (0, conv.kernel) for t in blocks[0][1])  # one block of every tap
        grad_w = None if whole else grad.new_zeros(k, c_out, c_in, *(conv.kernel,) * dims)
        grad_b, grad_patches = None, []
        for h, wb, (positions, taps) in zip(patches, wbs, blocks):
            g = grad if len(blocks) == 1 else grad[(..., *(slice(o0, o1) for o0, o1 in positions), slice(None))]
            g = g.reshape(k, -1, c_out)
            patch_shape, h = h.shape, h.view(k, -1, h.shape[-1])
            if h.shape[-1] >= c_out:  # G^T P
                gw = torch.bmm(g.transpose(1, 2), h)  # [K, C_out, taps * C_in]
            else:  # a narrow fan-in (a first layer's taps * 1 channel): P^T G is the faster one there
                gw = torch.bmm(h.transpose(1, 2), g).transpose(1, 2)
            gw = gw.view(k, c_out, *(t1 - t0 for t0, t1 in taps), c_in).movedim(-1, 2)
            if grad_w is None:
                grad_w = gw
            else:
                grad_w[(..., *(slice(t0, t1) for t0, t1 in taps))] += gw
            gb = g.sum(1)
            grad_b = gb if grad_b is None else grad_b + gb
            if ctx.needs_input_grad[0]:
                grad_patches.append(torch.bmm(g, wb).view(patch_shape))
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = col2im(grad_patches, shape, blocks, dims, conv.stride, conv.padding)
        return grad_x, grad_w.reshape(k * c_out, c_in, *(conv.kernel,) * dims), grad_b.reshape(-1), None, None


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

    def forward(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        """x [K, B, ...]."""
        if not ctx.train:
            return x
        return x * self.scale(tuple(x.shape), ctx).to(x.dtype)

    def relu(self, h: torch.Tensor, ctx: Context) -> torch.Tensor:
        """relu(h) then this dropout, for convolutional activations [K, B, *S, C], as one autograd node
        (ReluDropout): multipliers only for the members that drop, drawn as [A, B, C, *S] (the layout they were first
        drawn in: a seed's masks stay the same) and read channels-last."""
        if not ctx.train or self.active.numel() == 0:
            return h.relu()
        return ReluDropout.apply(h, self, self.draw_channels_last(h, ctx))

    def draw_channels_last(self, h: torch.Tensor, ctx: Context) -> torch.Tensor:
        """draw() for convolutional activations h [K, B, *S, C]: drawn as [A, B, C, *S], read as [A, B, *S, C]."""
        return self.draw((h.shape[0], h.shape[1], h.shape[-1], *h.shape[2:-1]), ctx).movedim(2, -1)


class ReluDropout(torch.autograd.Function):
    """relu(h) * m, m the dropout multipliers (0 or 1/(1-p)) of the members that drop, 1 elsewhere.

    Through autograd as a ReLU and a multiply by a full [K, ...] mask, this was a sixth of the CNN's step on
    MNIST-1D: the mask built for every member (most of a sweep's members do not drop), moved to channels-last, and
    read again backward. Here the members that drop are multiplied in place, and the backward pass reads no mask:
    the output is 0 wherever a unit was dropped or cut by ReLU, so ReLU's gradient through the output zeroes those,
    and the units kept take the member's factor 1/(1-p) (MemberDropout.rescale_). The same bits as the two steps."""

    @staticmethod
    def forward(ctx, h, drop: MemberDropout, drawn):
        y = drop.apply_(h.relu(), drawn)
        ctx.save_for_backward(y)
        ctx.drop = drop
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return ctx.drop.rescale_(torch.ops.aten.threshold_backward(grad, y, 0)), None, None


class MemberBatchNorm(nn.Module):
    """Batch norm with separate statistics and affine parameters per member, on for the members in `enabled`.

    Takes [K, B, C] (a convolution's [K, B, *S, C] viewed as [K, B*S, C]). Members are folded into channels (K*C),
    so F.batch_norm's per-channel batch statistics are per member; running statistics serve at evaluation. Members
    with it off get their input back untouched.
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
        n = x.shape[1]
        out = (
            F.batch_norm(
                x.transpose(0, 1).reshape(n, self.k * self.c),  # [N, K*C]
                self.running_mean,
                self.running_var,
                self.weight,
                self.bias,
                training=ctx.train,
                momentum=self.momentum,
                eps=self.eps,
            )
            .view(n, self.k, self.c)
            .transpose(0, 1)
        )
        return out if self.all_on else torch.where(self.enabled.view(-1, 1, 1), out, x)
