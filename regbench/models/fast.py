"""What the hand-written training steps (mlp_fast.py, cnn_fast.py) share: reused buffers, the input dropout, the
loss gradient over [K, classes, batch] logits, a plan's staleness and the gradients' memory."""

from __future__ import annotations

import math

import torch

from regbench import torch_private
from regbench.models.layers import Context, MemberDropout


class Scratch:
    """Scratch tensors reused every step or evaluation chunk, by name: a view of the start of a flat buffer, made
    larger only when a shape outgrows it (a split's shorter last chunk takes the start of the buffer its full
    chunks used). Fresh large intermediates cost page faults on CPU (glibc hands big blocks back to the OS and maps
    them again): ReLU's backward, a select over 1.4 MB, takes 0.8 ms into fresh memory against 30 us here."""

    def __init__(self):
        self.bufs: dict[str, torch.Tensor] = {}

    def buf(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        n = math.prod(shape)
        buf = self.bufs.get(name)
        if buf is None or buf.numel() < n or buf.dtype != like.dtype or buf.device != like.device:
            buf = self.bufs[name] = torch.empty(n, dtype=like.dtype, device=like.device)
        return buf[:n].view(shape)

    def const(self, name: str, shape: tuple[int, ...], like: torch.Tensor, value: float) -> torch.Tensor:
        """A scratch tensor filled with `value` once, when its buffer is made: the step only ever reads it."""
        made = self.bufs.get(name)
        buf = self.buf(name, shape, like)
        return buf if self.bufs[name] is made else buf.fill_(value)


def dropped_input(drop: MemberDropout | None, x: torch.Tensor, ctx: Context, scratch: Scratch) -> torch.Tensor:
    """x ([K, B, ...]) after input dropout, in a scratch copy (the batch is the caller's), or x itself without it."""
    if drop is None:
        return x
    return drop.apply_(scratch.buf("input", tuple(x.shape), x).copy_(x), drop.draw(tuple(x.shape), ctx))


def loss_grad(logits, y, d, minus_one, floor: float | None, d_rows=None) -> torch.Tensor:
    """d(mean cross-entropy)/d(logits) written into d, and [K] flags: the member's logits are finite. logits and d
    [K, C, B]; y [K, B] class indices or [K, B, C] target distributions; minus_one a [K, 1, B] tensor of -1;
    floor: where to raise log-probabilities before exp (see PlanBase); d_rows: d viewed [K, C*B], when made once."""
    k, b = logits.shape[0], logits.shape[2]
    # [K] finite flags from the largest |logit|, which is NaN or inf exactly when one is (a fifth of isfinite's
    # cost over all logits), and below inf exactly when it is neither (NaN compares false)
    torch.abs(logits, out=d)
    finite = (d.view(k, -1) if d_rows is None else d_rows).amax(1).lt(math.inf)
    # d(mean cross-entropy)/d(logits) = (softmax * sum(targets) - targets) / B. Softmax as exp(log_softmax): on 2
    # threads torch's softmax over a middle axis splits a member's columns between threads at a point that
    # depends on K, and the two halves round differently; log_softmax's kernel does not
    torch_private.log_softmax_out(logits, 1, out=d)
    if floor is not None:
        d.clamp_min_(floor)
    d.exp_()
    if y.dim() == 2:
        d.scatter_add_(1, y.view(k, 1, b), minus_one)
    else:
        t = y.transpose(1, 2)
        d.mul_(t.sum(1, keepdim=True)).sub_(t)
    d.mul_(1.0 / b)
    return finite


class PlanBase:
    """What a hand-written step's plan shares: the loss gradient's constants, and when the plan is stale."""

    def __init__(self, step, x: torch.Tensor, param: torch.Tensor):
        k, b = x.shape[:2]
        self.minus_one = step.scratch.const("minus_one", (k, 1, b), x, -1.0)
        # torch's exp of an input below -87.34 (a result below float32's smallest normal, 1.2e-38) leaves its
        # vector path: 30-100x slower, and a confident member's wrong classes have log-probabilities of -100 and
        # below (the benchmark's exp takes 9 us a step at first, 46 on average over 2000 steps). With denormals
        # flushed and a batch of 2 or more, the log-probabilities raised to -87 give the same gradient bits: every
        # probability below e^-87 = 1.65e-38, divided by the batch size, is a denormal the step flushes to zero
        self.floor = -87.0 if step.flushed and b >= 2 else None
        self.param = param
        self.key = (tuple(x.shape), x.dtype, x.device, param.data_ptr(), param.grad)

    def fits(self, h: torch.Tensor) -> bool:
        """Whether the plan serves this input: the same shape, dtype and device, and the same parameter and
        gradient memory (optim.FlatParams, .to(): checked on the output layer's weight)."""
        shape, dtype, device, ptr, grad = self.key
        same_input = shape == h.shape and dtype == h.dtype and device == h.device
        return same_input and ptr == self.param.data_ptr() and grad is self.param.grad


def grad_buffer(p: torch.Tensor) -> torch.Tensor:
    """The tensor a parameter's gradient is written into: the optimizer's flat buffer when it has one."""
    if p.grad is None:
        p.grad = torch.empty_like(p)
    return p.grad
