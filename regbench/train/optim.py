"""The optimizers: the fast path's one flat buffer holding every parameter, and the plain path's torch.optim.

A population's parameters are a handful of [K, ...] tensors; torch.optim's foreach Adam pays seven kernels per
tensor and its Python, ~1.2 ms a step for the benchmark's 36-member MLP. On the fast path the module's parameters
(and their gradients) are views into one flat parameter, and torch's fused Adam kernel steps that one tensor: a
single kernel, 0.16 ms.

Fused Adam's CPU kernel splits the work into 16-float units, runs a SIMD loop over each thread's share and a
scalar loop over the remainder, and the two round differently (the vector path uses FMA). On separate tensors of
size K*n, which elements fall in a remainder would depend on K, and a member would not equal itself trained alone.
The flat buffer is padded to a multiple of 64 floats, so every share is whole vectors, every element takes the
vector path and its result does not depend on its position (tested, and the population-equals-alone tests check
it end to end).
"""

from __future__ import annotations

import inspect
from functools import partial

import torch
from torch import nn

from regbench import torch_private

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


class FusedAdam:
    """torch.optim.Adam(fused=True) over one parameter, without being one: the same state tensors, made as torch
    makes them, stepped by the same kernel (torch_private.fused_adam_), and the state dict torch writes and reads
    (a test compares both ways). Constructing any torch optimizer imports torch._dynamo, whose disable wrapper guards
    Optimizer.__init__ (torch/_compile.py): 1.1-1.7 s of every process's start, for a step Optimizer below takes by
    calling the kernel itself anyway. SGD keeps torch's optimizer."""

    def __init__(self, param: nn.Parameter, lr: float, capturable: bool):
        sig = inspect.signature(torch.optim.Adam.__init__).parameters
        defaults = {k: v.default for k, v in sig.items() if k not in ("self", "params")}
        self.param_groups = [{"params": [param], **defaults, "lr": lr, "capturable": capturable, "fused": True}]
        self.state: dict[nn.Parameter, dict[str, torch.Tensor]] = {}

    def step(self) -> None:
        group = self.param_groups[0]
        p = group["params"][0]
        if p not in self.state:  # as torch's Adam makes it for fused: the step a float32 scalar on the device
            zeros = partial(torch.zeros_like, p, memory_format=torch.preserve_format)
            step = torch.zeros((), dtype=torch.float32, device=p.device)
            self.state[p] = {"step": step, "exp_avg": zeros(), "exp_avg_sq": zeros()}
        st = self.state[p]
        st["step"].add_(1)
        args = ([p], [p.grad], [st["exp_avg"]], [st["exp_avg_sq"]], [], [st["step"]])
        torch_private.fused_adam_(*args, **self.kernel_kwargs())

    def kernel_kwargs(self) -> dict:
        """The fused kernel's keyword arguments: the hyperparameters, as torch's _fused_adam passes them."""
        group = self.param_groups[0]
        beta1, beta2 = group["betas"]
        return dict(
            amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"],
            eps=group["eps"], maximize=False, grad_scale=None, found_inf=None,
        )  # fmt: skip

    def state_dict(self) -> dict:
        group = self.param_groups[0]
        p = group["params"][0]
        packed = {k: v for k, v in group.items() if k != "params"} | {"params": [0]}
        return {"state": {0: dict(self.state[p])} if p in self.state else {}, "param_groups": [packed]}

    def load_state_dict(self, state: dict) -> None:
        group = self.param_groups[0]
        p = group["params"][0]
        group.update({k: v for k, v in state["param_groups"][0].items() if k != "params"})
        saved = state["state"].get(0)
        self.state = {}
        if saved is not None:  # cast as torch's load_state_dict does for a fused Adam
            self.state[p] = {
                k: v.to(dtype=torch.float32 if k == "step" else p.dtype, device=p.device) for k, v in saved.items()
            }


class Optimizer:
    """The flat parameter's optimizer: torch's SGD, or Adam as torch's fused Adam; its state dict is torch's, so
    checkpoints hold it as is."""

    def __init__(self, flat: FlatParams, trainer):
        self.flat = flat
        if trainer.optimizer == "sgd":
            self.opt = torch.optim.SGD([flat.param], lr=trainer.lr, momentum=trainer.momentum)
        else:
            # capturable: its step count stays on the device, so a CUDA graph can hold the step (cuda_graph.py)
            self.opt = FusedAdam(flat.param, trainer.lr, capturable=flat.param.is_cuda)
        self.direct: tuple | None = None  # the fused kernel's arguments, once the first step made the state
        self.probed = False  # whether the state was looked at for them (SGD has none)
        self.by_block: list[tuple] = []  # the same arguments for each of flat.blocks (step_group)

    def step(self) -> None:
        """The optimizer's step. After Adam's first, which makes its state, the two calls it comes down to are made
        directly: even FusedAdam.step's few lines of Python are a visible share of a small population's step (torch's
        own Adam.step, hooks, grouping by device and checks, cost ~80 us, as much as the kernel)."""
        if self.direct is None:
            self.opt.step()
            if not self.probed:
                self.direct, self.probed = self._direct_call(), True
            return
        self.count_step()
        torch_private.fused_adam_(*self.direct[0], **self.direct[1])

    @property
    def stepwise(self) -> bool:
        """Whether the step can be taken a block at a time: count_step(), then step_group(i) for every block."""
        return self.direct is not None

    def count_step(self) -> None:
        self.direct[0][5][0].add_(1)  # the step count, as torch's _fused_adam does before its kernel

    def step_group(self, i: int) -> None:
        """Adam on block i of the flat buffer alone. Every element takes the kernel's vector path either way (each
        block is whole multiples of PAD), so stepping the blocks one by one gives the bits of one whole step."""
        torch_private.fused_adam_(*self.by_block[i], **self.direct[1])

    def _direct_call(self) -> tuple | None:
        if not isinstance(self.opt, FusedAdam):  # SGD: torch's step every time
            return None
        p = self.flat.param
        st = self.opt.state[p]
        args = ([p], [p.grad], [st["exp_avg"]], [st["exp_avg_sq"]], [], [st["step"]])
        data, grad, m, v = p.detach(), p.grad, st["exp_avg"], st["exp_avg_sq"]  # slices share their memory
        self.by_block = [([data[a:b]], [grad[a:b]], [m[a:b]], [v[a:b]], [], [st["step"]]) for a, b in self.flat.blocks]
        return args, self.opt.kernel_kwargs()

    def zero_grad(self) -> None:
        self.flat.zero_grad()

    def state_dict(self) -> dict:
        return self.opt.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state)
        self.direct, self.probed = None, False  # new state tensors: the next step goes through self.opt, takes them up


def make(module: nn.Module, trainer, groups: list[list[nn.Parameter]] | None = None) -> Optimizer:
    return Optimizer(FlatParams(module, groups), trainer)


def plain(module: nn.Module, trainer) -> torch.optim.Optimizer:
    """The plain path's optimizer: torch's own Adam or SGD, over each parameter as it is."""
    if trainer.optimizer == "sgd":
        return torch.optim.SGD(module.parameters(), lr=trainer.lr, momentum=trainer.momentum)
    return torch.optim.Adam(module.parameters(), lr=trainer.lr)
