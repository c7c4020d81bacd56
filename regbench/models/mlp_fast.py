"""The MLP's fast path: a hand-written training step and an evaluation forward into reused buffers.

Both compute what the readable MLP (mlp.py) computes through autograd; tests check them against it for dropout,
input dropout, soft targets, images and depths 0-3 (test_mlp_backward.py), and trainer.fast=false trains without
them (test_plain.py). Batch norm has no hand-written step: it keeps autograd.

Why by hand: for member-batched small layers the cost is in the kernels, not in autograd's bookkeeping.
Cross-entropy over [K*B, 10] logits runs at a tenth of the speed of the same softmax over [K, 10, B], and the
generic backward cannot pick the layouts. Here every product has a BLAS-friendly shape, the loss gradient is
softmax minus targets in one pass, and gradients are written straight into the optimizer's flat buffer. With the
flat fused optimizer (train/optim.py), the benchmark population's step (36 members, 2 CPU cores) takes ~5 ms,
against ~12 ms through autograd and torch.optim's Adam.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from regbench import torch_private
from regbench.models.fast import PlanBase, Scratch, dropped_input, grad_buffer, loss_grad
from regbench.models.layers import BatchedLinear, Context, MemberDropout

if TYPE_CHECKING:
    from regbench.models.mlp import MLP


def evaluate(model: MLP, x: torch.Tensor) -> torch.Tensor:
    """MLP.forward for one input shared by all members ([N, ...]) at evaluation, the same products and bits, with
    the hidden activations written in place into two reused buffers (a ReLU over the benchmark's [36, 113, 100]
    chunk takes 155 us into a new tensor, 23 in place; evaluating its 36 members on MNIST-1D, 49-52 ms against
    53-63). The output layer's [K, N, C] logits are returned new: the caller may keep them."""
    h = (x.flatten(1) if model.n_in > 1 else x).expand(model.k, -1, -1)  # what matmul broadcasts it to
    for i, lin in enumerate(model.hidden):
        out = model.scratch.buf(f"eval{i % 2}", (model.k, h.shape[1], lin.weight.shape[1]), x)
        h = torch.bmm(h, lin.weight.transpose(1, 2), out=out).add_(lin.bias).relu_()
    return torch.baddbmm(model.head.bias, h, model.head.weight.transpose(1, 2))


class TrainStep:
    """Forward and backward of the members' summed mean cross-entropies, by hand.

    step(x, y, ctx, done=None), with x [K, B, ...] and y [K, B] class indices or [K, B, C] target distributions,
    writes (does not add) every parameter's gradient into its .grad and returns [K] bool: the member's loss is
    finite (its logits are). done(i), when given, is called as soon as layer i's gradients are written and the
    backward pass no longer reads its weights (layers() lists them), from the output layer down: the engine
    updates the layer there, while its gradients are still in the cache (on 2 CPU cores, 0.3 ms of a ~4.2 ms step
    in the machine's slow minutes, nothing in its fast ones). Works on detached views (_Plan): no autograd graph,
    no torch.no_grad.

    `flushed`: the step runs with denormals flushed to zero on every thread (train/denormals.py), which lets it
    raise tiny log-probabilities before exp without changing a gradient bit (see fast.PlanBase).
    """

    def __init__(self, model: MLP, flushed: bool = False):
        self.model, self.flushed = model, flushed
        self.scratch = Scratch()
        self.plan: _Plan | None = None

    def layers(self) -> list[list[nn.Parameter]]:
        """Each layer's parameters (weight, bias), in the order of the `done` calls' indices."""
        return [[lin.weight, lin.bias] for lin in [*self.model.hidden, self.model.head]]

    def __call__(self, x: torch.Tensor, y: torch.Tensor, ctx: Context, done=None) -> torch.Tensor:
        k, b = x.shape[:2]
        h = x.flatten(2) if self.model.n_in > 1 else x
        plan = self.plan
        if plan is None or not plan.fits(h):
            plan = self.plan = _Plan(self, h)
        h = dropped_input(plan.input_drop, h, ctx, self.scratch)
        acts = [h]  # the layers' inputs
        for layer in plan.hidden:
            # bmm then the bias: the same bits as baddbmm, which first copies the broadcast bias into the output
            # (~60 us for the benchmark's [36, 100, 100]; the add reads it from the cache the product left it in)
            h = torch.bmm(h, layer.weight_t, out=layer.out).add_(layer.bias).relu_()
            if layer.drop is not None:
                drawn = layer.drop.draw(layer.shape, ctx)
                if layer.dropped is not None:
                    layer.dropped.mul_(drawn)
                else:
                    layer.drop.apply_(h, drawn)
            acts.append(h)
        head = plan.head
        # logits as [K, C, B]: softmax over the class axis of this layout is ten times faster than over [K, B, C]
        h_t = plan.hidden[-1].out_t if plan.hidden else h.transpose(1, 2)  # the same memory as h
        logits = torch.baddbmm(head.bias, head.weight, h_t, out=head.out)
        finite = loss_grad(logits, y, head.grad, plan.minus_one, plan.floor, head.grad_rows)
        d = head.grad
        torch.bmm(d, h, out=head.grad_w)
        torch.sum(d, 2, out=head.grad_b)
        if not plan.hidden:
            if done is not None:
                done(0)
            return finite
        g = torch.bmm(head.grad_t, head.weight, out=plan.hidden[-1].grad)  # [K, B, width]
        if done is not None:
            done(len(plan.hidden))
        for i in range(len(plan.hidden) - 1, -1, -1):
            layer = plan.hidden[i]
            # ReLU's and dropout's gradient: zero where the (dropped-out) activation is 0, which covers the dropped
            # units, and 1/(1-p) on the kept ones (the same bits as multiplying by the mask first, without reading
            # it). In place: g is scratch, and fewer scratch tensors leave more of the cache to the weights and Adam
            torch_private.threshold_backward_(g, acts[i + 1], 0.0)
            if layer.drop is not None:
                if layer.grad_dropped is not None:
                    layer.grad_dropped.mul_(layer.drop_scale)
                else:
                    layer.drop.rescale_(g)
            torch.bmm(layer.grad_t, acts[i], out=layer.grad_w)
            torch.sum(g, 1, out=layer.grad_b)
            if i > 0:
                g = torch.bmm(g, layer.weight, out=plan.hidden[i - 1].grad)
            if done is not None:
                done(i)
        return finite


class _Layer:
    """One layer as the step uses it: detached views of its parameters and gradients (in-place writes into them
    need no torch.no_grad), the buffer its output goes into and the one its output's gradient goes into."""

    def __init__(self, scratch: Scratch, lin: BatchedLinear, drop: MemberDropout | None, i: int, h: torch.Tensor):
        k, b = h.shape[:2]
        self.weight = lin.weight.detach()  # [K, out, in]
        self.weight_t = self.weight.transpose(1, 2)
        self.grad_w = grad_buffer(lin.weight)
        self.grad_b = grad_buffer(lin.bias).view(k, -1)
        if i < 0:  # the output layer: [K, C, B] (see TrainStep); its bias [K, C, 1], its grad buffer the dlogits
            self.bias = lin.bias.detach().transpose(1, 2)
            self.out = scratch.buf("logits", (k, self.weight.shape[1], b), h)
            self.grad = scratch.buf("dlogits", self.out.shape, h)
            self.grad_rows = self.grad.view(k, -1)  # a member's all in one row: the finite check's amax
        else:  # the gradient buffers alternate: a layer's input gradient is the previous layer's output gradient
            self.bias = lin.bias.detach()
            self.out = scratch.buf(f"act{i}", (k, b, self.weight.shape[1]), h)
            self.grad = scratch.buf(f"grad{i % 2}", self.out.shape, h)
        self.shape = tuple(self.out.shape)
        self.out_t, self.grad_t = self.out.transpose(1, 2), self.grad.transpose(1, 2)
        self.drop = drop
        # the rows dropout multiplies, as views made once, when the dropping members are consecutive (else None)
        self.dropped = drop.rows(self.out) if drop is not None else None
        self.grad_dropped = drop.rows(self.grad) if drop is not None else None
        self.drop_scale = drop.drawn_scale.view(-1, 1, 1) if drop is not None else None


class _Plan(PlanBase):
    """Everything the step reads every step, looked up once: the layers' detached parameter and gradient views
    and scratch buffers (nn.Module attribute lookups, views and the torch.no_grad decorator cost ~115 us a step, on
    2 CPU cores some 3% of the benchmark's step). Rebuilt when the input's shape, dtype or device changes, or the
    parameters' or gradients' memory does (optim.FlatParams, .to(): checked on the output layer's weight)."""

    def __init__(self, step: TrainStep, x: torch.Tensor):
        model, scratch = step.model, step.scratch
        drops = list(model.drops) if len(model.drops) else [None] * len(model.hidden)
        self.hidden: list[_Layer] = []
        h = x
        for i, lin in enumerate(model.hidden):
            self.hidden.append(_Layer(scratch, lin, drops[i], i, h))
            h = self.hidden[-1].out
        self.head = _Layer(scratch, model.head, None, -1, h)
        self.input_drop = model.input_drop
        super().__init__(step, x, model.head.weight)
