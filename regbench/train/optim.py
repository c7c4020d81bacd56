"""Adam and SGD over one flat buffer holding every parameter of a member-batched model.

A population's parameters are a handful of [K, ...] tensors; torch.optim's foreach path still pays a kernel and
some Python per tensor per operation, ~1.2 ms a step for the benchmark's 36-member MLP. Here the parameters (and
their gradients) are views into one buffer each, so an update is seven element-wise kernels in all (~0.4 ms).

The arithmetic is torch.optim's own (`_multi_tensor_adam`/`_multi_tensor_sgd`, the non-capturable path): the
same kernels in the same order with the same scalars, so results equal torch.optim.Adam(foreach=True) bit for bit
(tested). Not torch's fused kernel: it rounds an element differently depending on where it falls in its SIMD loop,
i.e. on the population's size, and members must equal themselves trained alone.
"""

from __future__ import annotations

import torch
from torch import nn


class FlatParams:
    """Moves a module's parameters into one contiguous buffer and gives each a gradient view into another.

    Gradients are never set to None: autograd accumulates into the existing views, a hand-written backward writes
    into them, and `zero_grad` clears all of them with one kernel. Call after the module is on its device.
    """

    def __init__(self, module: nn.Module):
        params = list(module.parameters())
        first = params[0]
        n = sum(p.numel() for p in params)
        self.data = torch.empty(n, dtype=first.dtype, device=first.device)
        self.grad = torch.zeros_like(self.data)
        offset = 0
        for p in params:
            size = p.numel()
            view = self.data[offset : offset + size].view_as(p)
            view.copy_(p.detach())
            p.data = view
            p.grad = self.grad[offset : offset + size].view_as(p)
            offset += size

    def zero_grad(self) -> None:
        self.grad.zero_()


class Adam:
    def __init__(self, flat: FlatParams, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.flat, self.lr, self.betas, self.eps = flat, lr, betas, eps
        self.step_count = 0
        self.exp_avg = torch.zeros_like(flat.data)
        self.exp_avg_sq = torch.zeros_like(flat.data)
        self._denom = torch.empty_like(flat.data)  # reused: a fresh 2 MB tensor per step costs page faults on CPU

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        grad = self.flat.grad
        self.step_count += 1
        t = float(self.step_count)  # torch keeps the count as a float32 tensor and reads it back as a float
        self.exp_avg.lerp_(grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step_size = (self.lr / (1 - beta1**t)) * -1
        denom = torch.sqrt(self.exp_avg_sq, out=self._denom)
        denom.div_((1 - beta2**t) ** 0.5).add_(self.eps)
        self.flat.data.addcdiv_(self.exp_avg, denom, value=step_size)

    def zero_grad(self) -> None:
        self.flat.zero_grad()

    def state_dict(self) -> dict:
        return {"step": self.step_count, "exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step"])
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])


class SGD:
    def __init__(self, flat: FlatParams, lr: float, momentum: float = 0.0):
        self.flat, self.lr, self.momentum = flat, lr, momentum
        self.buf: torch.Tensor | None = None  # the momentum buffer starts as the first gradient, as in torch

    @torch.no_grad()
    def step(self) -> None:
        grad = self.flat.grad
        if self.momentum:
            if self.buf is None:
                self.buf = grad.detach().clone()
            else:
                self.buf.mul_(self.momentum).add_(grad, alpha=1.0)
            grad = self.buf
        self.flat.data.add_(grad, alpha=-self.lr)

    def zero_grad(self) -> None:
        self.flat.zero_grad()

    def state_dict(self) -> dict:
        return {"momentum_buffer": self.buf}

    def load_state_dict(self, state: dict) -> None:
        buf = state["momentum_buffer"]
        self.buf = None if buf is None else buf.to(self.flat.data.device).clone()


def make(module: nn.Module, trainer) -> Adam | SGD:
    flat = FlatParams(module)
    if trainer.optimizer == "sgd":
        return SGD(flat, trainer.lr, trainer.momentum)
    return Adam(flat, trainer.lr)
