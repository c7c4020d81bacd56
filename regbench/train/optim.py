"""The optimizer over one flat buffer holding every parameter of a member-batched model.

A population's parameters are a handful of [K, ...] tensors; torch.optim's foreach Adam still pays seven kernels
per tensor and its Python, ~1.2 ms a step for the benchmark's 36-member MLP. Here the module's parameters (and
their gradients) are views into one flat parameter, and torch's own Adam steps that one tensor: with fused=True a
single kernel, 0.16 ms.

Why fused Adam is safe here, when it was not on separate tensors: its CPU kernel splits the work into 16-float
units, runs a SIMD loop over each thread's share and a scalar loop over the remainder, and the two round
differently (the vector path uses FMA). On separate tensors of size K*n which elements fall in a remainder
depends on K, so a member drifted from itself trained alone. The flat buffer is padded to a multiple of 64 floats,
so every share is whole vectors, every element takes the vector path and its result no longer depends on its
position (tested, and the population-equals-alone tests check it end to end).
"""

from __future__ import annotations

import torch
from torch import nn

PAD = 64  # floats: a multiple of every SIMD width and of the fused kernel's 16-float work unit


class FlatParams:
    """Moves a module's parameters into one contiguous parameter and gives each a gradient view into its grad.

    Gradients are never set to None: autograd accumulates into the existing views, a hand-written backward writes
    into them, and `zero_grad` clears all of them with one kernel. Call after the module is on its device.

    `groups` (lists of parameters, e.g. a layer's weight and bias) each get a block of their own, padded to PAD
    floats like the whole, so that Adam can step one block alone with the same bits (Optimizer.step_group);
    parameters in no group form a last block. `blocks` holds each block's (start, end) in the flat buffer.
    """

    def __init__(self, module: nn.Module, groups: list[list[nn.Parameter]] | None = None):
        params = list(module.parameters())
        grouped = {id(p) for g in groups or [] for p in g}
        groups = [list(g) for g in groups or []] + [[p for p in params if id(p) not in grouped]]
        groups = [g for g in groups if g]
        first = params[0]
        # the pads stay zero: a zero gradient, no update
        padded = sum(-(-sum(p.numel() for p in g) // PAD) * PAD for g in groups)
        self.param = nn.Parameter(torch.zeros(padded, dtype=first.dtype, device=first.device))
        self.param.grad = torch.zeros_like(self.param)
        data, grad = self.param.data, self.param.grad
        self.blocks: list[tuple[int, int]] = []
        offset = 0
        for g in groups:
            start = offset
            for p in g:
                size = p.numel()
                view = data[offset : offset + size].view_as(p)
                view.copy_(p.detach())
                p.data = view
                p.grad = grad[offset : offset + size].view_as(p)
                offset += size
            offset = -(-offset // PAD) * PAD
            self.blocks.append((start, offset))

    def zero_grad(self) -> None:
        self.param.grad.zero_()


class Optimizer:
    """A torch optimizer stepping the flat parameter; its state dict is torch's, so checkpoints hold it as is."""

    def __init__(self, flat: FlatParams, trainer):
        self.flat = flat
        if trainer.optimizer == "sgd":
            self.opt = torch.optim.SGD([flat.param], lr=trainer.lr, momentum=trainer.momentum)
        else:
            # capturable: its step count stays on the device, so a CUDA graph can hold the step (graph.py)
            self.opt = torch.optim.Adam([flat.param], lr=trainer.lr, fused=True, capturable=flat.param.is_cuda)
        self.direct: tuple | None = None  # the fused kernel's arguments, once torch's first step made the state
        self.probed = False  # whether the state was looked at for them (SGD and amsgrad have none)
        self.by_block: list[tuple] = []  # the same arguments for each of flat.blocks (step_group)

    def step(self) -> None:
        """torch's Adam step. After the first, the two calls it comes down to are made directly: its Python wrapper
        (hooks, grouping by device, checks) cost ~80 us a step, as much as the kernel for a small population."""
        if self.direct is None:
            self.opt.step()
            if not self.probed:
                self.direct, self.probed = self._direct_call(), True
            return
        self.count_step()
        torch._fused_adam_(*self.direct[0], **self.direct[1])

    @property
    def stepwise(self) -> bool:
        """Whether the step can be taken a block at a time: count_step(), then step_group(i) for every block."""
        return self.direct is not None

    def count_step(self) -> None:
        self.direct[0][5][0].add_(1)  # the step count, as torch's _fused_adam does before its kernel

    def step_group(self, i: int) -> None:
        """Adam on block i of the flat buffer alone. Every element takes the kernel's vector path either way (each
        block is whole multiples of PAD), so stepping the blocks one by one gives the bits of one whole step."""
        torch._fused_adam_(*self.by_block[i], **self.direct[1])

    def _direct_call(self) -> tuple | None:
        group = self.opt.param_groups[0]
        if not isinstance(self.opt, torch.optim.Adam) or not hasattr(torch, "_fused_adam_") or group["amsgrad"]:
            return None
        p = self.flat.param
        st = self.opt.state[p]
        args = ([p], [p.grad], [st["exp_avg"]], [st["exp_avg_sq"]], [], [st["step"]])
        data, grad, m, v = p.detach(), p.grad, st["exp_avg"], st["exp_avg_sq"]  # slices share their memory
        self.by_block = [([data[a:b]], [grad[a:b]], [m[a:b]], [v[a:b]], [], [st["step"]]) for a, b in self.flat.blocks]
        beta1, beta2 = group["betas"]
        kwargs = dict(
            amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"],
            eps=group["eps"], maximize=False, grad_scale=None, found_inf=None,
        )  # fmt: skip
        return args, kwargs

    def zero_grad(self) -> None:
        self.flat.zero_grad()

    def state_dict(self) -> dict:
        return self.opt.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state)
        self.direct, self.probed = None, False  # new state tensors: the next step goes through torch, takes them up


def make(module: nn.Module, trainer, groups: list[list[nn.Parameter]] | None = None) -> Optimizer:
    return Optimizer(FlatParams(module, groups), trainer)
