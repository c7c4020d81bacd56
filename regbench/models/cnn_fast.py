"""The CNN's fast path: a hand-written training step into reused buffers, as mlp_fast.py is the MLP's.

It computes what the CNN's forward pass (models/cnn.py: layers.ConvProduct, MemberDropout.relu) and autograd
compute, with the same products in the same layouts; the logits are [K, C, B], as in the MLP's step. Tests check it
against autograd (tests/test_conv.py); trainer.fast=false trains without it. Batch norm has no hand-written step.

Why by hand: the population's step is small kernels (the MNIST-1D CNN's layers are 25 channels wide), and through
autograd a tenth of its time went to the engine's bookkeeping, the ReLU and im2col outputs allocated afresh, the
zero fills of fresh padding and the softmax over [K*B, C]. Here the activations, patches and gradients live in
buffers made once; the zero border of each layer's padded input is written once; ReLU, its gradient and dropout
run in place; gradients are written straight into the optimizer's flat buffer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from regbench import torch_private
from regbench.models.fast import PlanBase, Scratch, dropped_input, grad_buffer, loss_grad
from regbench.models.layers import BatchedConv, Context, MemberDropout, col2im, im2col, padded_shape

if TYPE_CHECKING:
    from regbench.models.cnn import CNN


class TrainStep:
    """Forward and backward of the members' summed mean cross-entropies, by hand: the contract of
    mlp_fast.TrainStep (step(x, y, ctx, done=None) writes every gradient and returns [K] finite flags; done(i) is
    called once layer i's gradients are written and the step no longer reads its weights)."""

    def __init__(self, model: CNN, flushed: bool = False):
        self.model, self.flushed = model, flushed
        self.scratch = Scratch()
        self.plan: _Plan | None = None

    def layers(self) -> list[list[torch.nn.Parameter]]:
        """Each layer's parameters (weight, bias), in the order of the `done` calls' indices."""
        return [[layer.weight, layer.bias] for layer in [*self.model.convs, self.model.head]]

    def __call__(self, x: torch.Tensor, y: torch.Tensor, ctx: Context, done=None) -> torch.Tensor:
        model = self.model
        plan = self.plan
        if plan is None or not plan.fits(x):
            plan = self.plan = _Plan(self, x)
        h = model._fold(dropped_input(model.input_drop, x, ctx, self.scratch))
        for layer in plan.convs:
            h = layer.forward(h, ctx)
        head = plan.head
        # the head reads features channel-major, (C, *S), as nn.Conv's flatten does (models/cnn.py)
        feats = plan.feats.view(plan.feats_cs).copy_(h.movedim(-1, 2)).view(plan.feats.shape)  # [K, B, F]
        logits = torch.baddbmm(head.bias_t, head.weight, feats.transpose(1, 2), out=plan.logits)  # [K, C, B]
        d = plan.dlogits
        finite = loss_grad(logits, y, d, plan.minus_one, plan.floor)
        torch.bmm(d, feats, out=head.grad_w)
        torch.sum(d, 2, out=head.grad_b)
        g_feats = torch.bmm(d.transpose(1, 2), head.weight, out=plan.g_feats)  # [K, B, F]
        g = plan.convs[-1].grad.copy_(g_feats.view(plan.feats_cs).movedim(2, -1))  # channels-last
        if done is not None:
            done(len(plan.convs))
        for i in range(len(plan.convs) - 1, -1, -1):
            g = plan.convs[i].backward(g, plan.convs[i - 1].grad if i > 0 else None)
            if done is not None:
                done(i)
        return finite


class _Conv:
    """One convolution as the step uses it: its detached parameters and gradient views, the plan's blocks, and
    the buffers for its padded input, patches, block weights, output and output gradient."""

    def __init__(self, scratch: Scratch, conv: BatchedConv, drop: MemberDropout | None, i: int, shape):
        self.conv, self.drop = conv, drop
        k, dims = conv.k, conv.dims
        self.blocks = blocks = conv.blocks_for(tuple(shape[2:-1]))
        like = conv.weight
        self.padded = torch.zeros(padded_shape(tuple(shape), dims, conv.padding), dtype=like.dtype, device=like.device)
        self.pad_grad = torch.empty_like(self.padded) if i > 0 else None  # the first layer's input has no gradient
        self.patches, self.wbs, self.block_out, self.spans = [], [], [], []
        for b, (positions, taps) in enumerate(blocks):
            span = tuple(t1 - t0 for t0, t1 in taps)
            fan_in = int(torch.tensor(span).prod()) * conv.c_in
            pos = tuple(o1 - o0 for o0, o1 in positions)
            self.patches.append(scratch.buf(f"patches{i}.{b}", (k, shape[1], *pos, fan_in), like))
            self.wbs.append(scratch.buf(f"wb{i}.{b}", (k, conv.c_out, fan_in), like))
            self.spans.append(span)
            if len(blocks) > 1:
                self.block_out.append(scratch.buf(f"block{i}.{b}", (k, shape[1], *pos, conv.c_out), like))
        out_size = tuple(o1 for _, o1 in blocks[-1][0])  # the last block ends where the output does
        self.out = scratch.buf(f"act{i}", (k, shape[1], *out_size, conv.c_out), like)
        self.grad = scratch.buf(f"grad{i}", tuple(self.out.shape), like)
        self.whole = len(blocks) == 1 and all(t == (0, conv.kernel) for t in blocks[0][1])
        self.weight = conv.weight.detach().view(k, conv.c_out, conv.c_in, *(conv.kernel,) * dims)
        self.bias = conv.bias.detach().view(k, 1, conv.c_out)
        self.grad_w = grad_buffer(conv.weight).view(self.weight.shape)
        self.grad_b = grad_buffer(conv.bias).view(k, conv.c_out)
        self.in_shape = tuple(shape)

    def forward(self, h: torch.Tensor, ctx: Context) -> torch.Tensor:
        conv, k, c_out = self.conv, self.conv.k, self.conv.c_out
        im2col(h, self.blocks, conv.dims, conv.stride, conv.padding, self.padded, self.patches)
        for b, (_, taps) in enumerate(self.blocks):
            w = self.weight[(..., *(slice(t0, t1) for t0, t1 in taps))].movedim(2, -1)
            self.wbs[b].view(w.shape).copy_(w)
        for b, (p, wb) in enumerate(zip(self.patches, self.wbs)):
            out = self.out if not self.block_out else self.block_out[b]
            torch.baddbmm(self.bias, p.view(k, -1, p.shape[-1]), wb.transpose(1, 2), out=out.view(k, -1, c_out))
        if self.block_out:
            for y, (positions, _) in zip(self.block_out, self.blocks):
                self.out[(..., *(slice(o0, o1) for o0, o1 in positions), slice(None))] = y
        h = self.out.relu_()
        if self.drop is not None and self.drop.active.numel():
            self.drop.apply_(h, self.drop.draw_channels_last(h, ctx))
        return h

    def backward(self, g: torch.Tensor, g_in: torch.Tensor | None) -> torch.Tensor | None:
        """g, this layer's output gradient (its buffer, overwritten): writes the parameters' gradients, and the
        input's gradient into g_in (the previous layer's output-gradient buffer) when given."""
        conv, k, c_out = self.conv, self.conv.k, self.conv.c_out
        # ReLU's and dropout's gradient in place: zero where the output is 0 (cut or dropped), 1/(1-p) where kept
        torch_private.threshold_backward_(g, self.out, 0.0)
        if self.drop is not None and self.drop.active.numel():
            self.drop.rescale_(g)
        torch.sum(g.view(k, -1, c_out), 1, out=self.grad_b)
        if not self.whole:
            self.grad_w.zero_()
        grad_patches = []
        for b, (p, wb, (positions, taps)) in enumerate(zip(self.patches, self.wbs, self.blocks)):
            gb = g if len(self.blocks) == 1 else g[(..., *(slice(o0, o1) for o0, o1 in positions), slice(None))]
            gb = gb.reshape(k, -1, c_out)
            pm = p.view(k, -1, p.shape[-1])
            # the layouts of layers.ConvProduct.backward: G^T P where the fan-in is at least C_out, else P^T G
            gw = torch.bmm(gb.transpose(1, 2), pm) if pm.shape[-1] >= c_out else torch.bmm(pm.transpose(1, 2), gb).mT
            gw = gw.view(k, c_out, *self.spans[b], conv.c_in).movedim(-1, 2)
            if self.whole:
                self.grad_w.copy_(gw)
            else:
                self.grad_w[(..., *(slice(t0, t1) for t0, t1 in taps))] += gw
            if g_in is not None:
                grad_patches.append(torch.bmm(gb, wb).view(p.shape))
        if g_in is None:
            return None
        inside = col2im(grad_patches, self.in_shape, self.blocks, conv.dims, conv.stride, conv.padding, self.pad_grad)
        return g_in.copy_(inside)


class _Head:
    """The output layer's detached weight [K, C, F], bias as [K, C, 1] and gradient views."""

    def __init__(self, head):
        self.weight = head.weight.detach()
        self.bias_t = head.bias.detach().transpose(1, 2)
        self.grad_w = grad_buffer(head.weight)
        self.grad_b = grad_buffer(head.bias).view(head.weight.shape[0], -1)


class _Plan(PlanBase):
    """Everything the step reads every step, made once: the layers, buffers and detached views (see mlp_fast._Plan);
    rebuilt when it no longer fits (PlanBase.fits)."""

    def __init__(self, step: TrainStep, x: torch.Tensor):
        model, scratch = step.model, step.scratch
        k, b = x.shape[:2]
        drops = list(model.drops) if len(model.drops) else [None] * len(model.convs)
        self.convs: list[_Conv] = []
        shape = tuple(model._fold(x).shape)
        for i, conv in enumerate(model.convs):
            self.convs.append(_Conv(scratch, conv, drops[i], i, shape))
            shape = tuple(self.convs[-1].out.shape)
        last = self.convs[-1].out
        self.feats_cs = (k, b, last.shape[-1], *last.shape[2:-1])  # channel-major: (K, B, C, *S)
        self.feats = scratch.buf("feats", (k, b, model.features), x)
        self.g_feats = scratch.buf("g_feats", (k, b, model.features), x)
        self.head = _Head(model.head)
        c = self.head.weight.shape[1]
        self.logits = scratch.buf("logits", (k, c, b), x)
        self.dlogits = scratch.buf("dlogits", (k, c, b), x)
        super().__init__(step, x, model.head.weight)
