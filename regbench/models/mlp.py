"""Multi-layer perceptron: inputs flattened, `depth` hidden layers of `width` units, ReLU.

Training steps have a hand-written backward pass (`train_step`). For member-batched small layers autograd was
not the cost, its kernels were: cross-entropy over [K*B, 10] logits ran at a tenth of the speed of the same
softmax over [K, 10, B], and the generic backward could not pick the layouts. By hand, every product has a
BLAS-friendly shape, the loss gradient is softmax minus targets in one pass, and gradients are written straight
into the optimizer's buffer. With the flat fused optimizer and cheaper dropout masks, the benchmark population's
step (36 members, 2 CPU cores) fell from ~12 ms to ~5 ms. Tests check it against autograd for dropout, input
dropout, soft targets, images and depths 0-3. Batch norm keeps autograd.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from regbench.models.base import MemberModel, ModelHints
from regbench.models.layers import BatchedLinear, Context, MemberBatchNorm, MemberDropout
from regbench.schema import param


@dataclass
class MlpConfig:
    name: str = "mlp"
    width: int = param(100, "units per hidden layer", ge=1, le=65536)
    depth: int = param(2, "number of hidden layers", ge=0, le=64)


class MLP(MemberModel):
    def __init__(self, cfg: MlpConfig, input_shape, kind: str, n_classes: int, gens, hints: ModelHints):
        super().__init__(len(gens))
        self.n_in = len(input_shape)
        fan_in = math.prod(input_shape)
        self.input_drop = MemberDropout(hints.input_dropout, "dropout.input") if hints.input_dropout.any() else None
        self.hidden = nn.ModuleList()
        self.bns = nn.ModuleList()
        self.drops = nn.ModuleList()
        for i in range(cfg.depth):
            self.hidden.append(BatchedLinear(gens, fan_in, cfg.width))
            if hints.batch_norm.any():
                self.bns.append(MemberBatchNorm(hints.batch_norm, cfg.width))
                self.bns[-1].follows(self.hidden[-1].bias)
            if hints.dropout.any():
                self.drops.append(MemberDropout(hints.dropout, f"dropout.{i}"))
            fan_in = cfg.width
        self.head = BatchedLinear(gens, fan_in, n_classes)
        for lin in [*self.hidden, self.head]:
            self.weights.append(lin.weight)
            self.biases.append(lin.bias)
        for bn in self.bns:
            self.norms += [bn.weight, bn.bias]
        self.by_hand = not self.bns  # train_step supports everything but batch norm
        self._scratch: dict[str, torch.Tensor] = {}  # train_step's reused intermediates (not state: never saved)

    def forward(self, x, ctx: Context):
        h = x.flatten(-self.n_in) if self.n_in > 1 else x  # [K, B, F] in training, shared [N, F] at evaluation
        if self.input_drop is not None:
            h = self.input_drop(h, ctx)
        for i, lin in enumerate(self.hidden):
            h = lin(h)
            if self.bns:
                h = self.bns[i](h, ctx)
            h = h.relu()
            if self.drops:
                h = self.drops[i](h, ctx)
        return self.head(h)

    def _buf(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """A scratch tensor reused every step. The step's large intermediates are written into the same memory each
        time: fresh ones cost page faults on CPU (glibc hands big blocks back to the OS and maps them again), which
        made ReLU's backward, a select over 1.4 MB, take 0.8 ms instead of 30 us."""
        buf = self._scratch.get(name)
        if buf is None or buf.shape != shape or buf.dtype != like.dtype or buf.device != like.device:
            buf = self._scratch[name] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return buf

    def _const(self, name: str, shape: tuple[int, ...], like: torch.Tensor, value: float) -> torch.Tensor:
        """A scratch tensor filled with `value` once, when made: the step only ever reads it."""
        made = self._scratch.get(name)
        buf = self._buf(name, shape, like)
        return buf if buf is made else buf.fill_(value)

    def layers(self) -> list[list[nn.Parameter]]:
        """Each layer's parameters (weight, bias), in the order of train_step's `done` calls' indices."""
        return [[lin.weight, lin.bias] for lin in [*self.hidden, self.head]]

    @torch.no_grad()
    def train_step(self, x: torch.Tensor, y: torch.Tensor, ctx: Context, done=None) -> torch.Tensor:
        """Forward and backward of the members' summed mean cross-entropies, by hand.

        x: [K, B, ...]; y: [K, B] class indices or [K, B, C] target distributions. Writes (does not add) every
        parameter's gradient into its .grad and returns [K] bool: the member's loss is finite (its logits are).
        done(i), when given, is called as soon as layer i's gradients are written and the backward pass no longer
        reads its weights (layers() lists them), from the output layer down: the engine updates the layer there,
        while its gradients are still in the cache (on 2 CPU cores, 0.3 ms of a ~4.2 ms step in the machine's slow
        minutes, nothing in its fast ones).
        """
        k, b = x.shape[:2]
        h = x.flatten(2) if self.n_in > 1 else x
        if self.input_drop is not None:
            drawn = self.input_drop.draw(tuple(h.shape), ctx)
            h = self.input_drop.apply_(self._buf("input", tuple(h.shape), h).copy_(h), drawn)
        acts = [h]  # the layers' inputs
        for i, lin in enumerate(self.hidden):
            out = self._buf(f"act{i}", (k, b, lin.weight.shape[1]), h)
            h = torch.baddbmm(lin.bias, h, lin.weight.transpose(1, 2), out=out).relu_()
            if self.drops:
                self.drops[i].apply_(h, self.drops[i].draw(tuple(h.shape), ctx))
            acts.append(h)
        head = self.head
        # logits as [K, C, B]: softmax over the class axis of this layout is ten times faster than over [K, B, C]
        c = head.weight.shape[1]
        logits = self._buf("logits", (k, c, b), h)
        torch.baddbmm(head.bias.transpose(1, 2), head.weight, h.transpose(1, 2), out=logits)
        # [K] finite flags from the largest |logit|, which is NaN or inf exactly when one is (a fifth of isfinite's
        # cost over all logits), and below inf exactly when it is neither (NaN compares false)
        finite = torch.abs(logits, out=self._buf("abs_logits", (k, c, b), h)).flatten(1).amax(1).lt(math.inf)
        # d(mean cross-entropy)/d(logits) = (softmax * sum(targets) - targets) / B. Softmax as exp(log_softmax): on 2
        # threads torch's softmax over a middle axis splits a member's columns between threads at a point that
        # depends on K, and the two halves round differently; log_softmax's kernel does not
        d = torch.ops.aten._log_softmax.out(logits, 1, False, out=self._buf("dlogits", (k, c, b), h)).exp_()
        if y.dim() == 2:
            d.scatter_add_(1, y.view(k, 1, b), self._const("minus_one", (k, 1, b), h, -1.0))
        else:
            t = y.transpose(1, 2)
            d.mul_(t.sum(1, keepdim=True)).sub_(t)
        d.mul_(1.0 / b)
        torch.bmm(d, h, out=_grad(head.weight))
        torch.sum(d, 2, out=_grad(head.bias).view(k, -1))
        if not self.hidden:
            if done is not None:
                done(0)
            return finite
        g = torch.bmm(d.transpose(1, 2), head.weight, out=self._buf("grad_out", tuple(h.shape), h))  # [K, B, width]
        if done is not None:
            done(len(self.hidden))
        for i in range(len(self.hidden) - 1, -1, -1):
            lin = self.hidden[i]
            # ReLU's and dropout's gradient: zero where the (dropped-out) activation is 0, which covers the dropped
            # units, and 1/(1-p) on the kept ones (the same bits as multiplying by the mask first, without reading
            # it). In place: g is scratch, and fewer scratch tensors leave more of the cache to the weights and Adam
            torch.ops.aten.threshold_backward.grad_input(g, acts[i + 1], 0.0, grad_input=g)
            if self.drops:
                self.drops[i].rescale_(g)
            torch.bmm(g.transpose(1, 2), acts[i], out=_grad(lin.weight))
            torch.sum(g, 1, out=_grad(lin.bias).view(k, -1))
            if i > 0:
                g = torch.bmm(g, lin.weight, out=self._buf(f"grad_in{i % 2}", tuple(acts[i].shape), g))
            if done is not None:
                done(i)
        return finite


def _grad(p: torch.Tensor) -> torch.Tensor:
    """The tensor a parameter's gradient is written into: the optimizer's flat buffer when it has one."""
    if p.grad is None:
        p.grad = torch.empty_like(p)
    return p.grad
