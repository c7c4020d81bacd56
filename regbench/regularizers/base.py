"""The hooks a regularizer may implement. Each regularizer is one module implementing only the ones it needs.

A population of K members holds one instance of each regularizer used by any member. The instance receives the
per-member configs (None for members that do not use it) and turns them into [K] tensors, so members with
different strengths, and baseline members with the regularizer off, train side by side in one computation.

Hooks, in the order the engine calls them:
  hints(h)                 before the model is built: set architecture switches (dropout p, batch norm)
  transform(batch, ctx)    each training step, before the forward pass: augment inputs or soften targets
  penalty(model) -> [K]    the penalty each member adds to its loss
  penalty_grad(model, params=None)
                           each training step, after the loss's backward pass: add the penalty's gradient to the
                           parameters' .grad (or to `params`' only). The default differentiates penalty() with
                           autograd; weight penalties override it with their closed form, one kernel per tensor
                           instead of a graph (tests check the two agree), and with it the engine can update each
                           layer as soon as its gradients are complete (layerwise())
  post_step(model, lr)     after each optimizer step: projections, decoupled decay
  on_eval(model, epoch, metrics) -> [K] bool
                           after each evaluation (metrics: [K, 6] on the device, columns as train.evaluate.COLUMNS):
                           members to freeze from now on (early stopping); the engine stops updating them
  on_end(model) -> bool    after training: e.g. restore each member's best weights; True if it changed weights
  record() -> [K] dicts    fields each member adds to its entry in result.json (e.g. stop and best epochs)
  state_dict() / load_state_dict(state)
                           whatever the regularizer keeps between steps (e.g. best weights so far), as tensors
                           and plain containers: saved in checkpoints so a resumed run continues exactly

Combining regularizers: every hook composes. Penalties add up, transforms chain in the composed order, post-steps
apply one after the other. Two penalties on the same weights under different names (l1 + elastic_net, l2 +
elastic_net, l2 + weight_decay) are therefore additive, not refused: the result is well defined, and a sweep over
combinations should not stop at one of them. Each module's docstring states what it adds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from regbench.models.base import MemberModel, ModelHints
from regbench.models.layers import Context, member_span


@dataclass
class Batch:
    x: torch.Tensor  # [K, B, ...] inputs, one minibatch per member
    y: torch.Tensor  # [K, B] class indices, or [K, B, C] target distributions once a regularizer softens them
    n_classes: int
    kind: str  # the data's kind: sequence, image or table

    def soft_targets(self) -> torch.Tensor:
        if self.y.dim() == 3:
            return self.y
        return torch.nn.functional.one_hot(self.y, self.n_classes).to(self.x.dtype)


class Regularizer:
    name: ClassVar[str]
    Config: ClassVar[type]
    summary: ClassVar[str] = ""
    kinds: ClassVar[tuple[str, ...]] = ("sequence", "image", "table")  # data kinds it takes: checked before launch

    def __init__(self, configs: list[Any | None], device: torch.device | str = "cpu"):
        self.configs = configs
        self.k = len(configs)
        self.device = torch.device(device)
        self.active = torch.tensor([c is not None for c in configs], device=self.device)

    def values(self, attr: str, off: float = 0.0) -> torch.Tensor:
        """Per-member tensor [K] of one config field; `off` for members that do not use this regularizer."""
        vals = [float(getattr(c, attr)) if c is not None else off for c in self.configs]
        return torch.tensor(vals, dtype=torch.float32, device=self.device)

    # Hooks: the defaults do nothing, so each regularizer overrides only what it needs.
    def hints(self, hints: ModelHints) -> None:
        return None

    def transform(self, batch: Batch, ctx: Context) -> Batch:
        return batch

    def penalty(self, model: MemberModel) -> torch.Tensor | None:
        return None

    def penalty_grad(self, model: MemberModel, params: list[torch.Tensor] | None = None) -> None:
        """Add the penalty's gradient to every parameter's .grad, or to `params`' only: the hand-written step
        updates each layer as soon as its gradients are complete (train/engine.py), where layerwise() holds."""
        pen = self.penalty(model)
        if pen is not None:
            pen.sum().backward()  # members are independent: each gets its own penalty's gradient

    @classmethod
    def has_penalty(cls) -> bool:
        """Whether penalty_grad adds anything: the engine calls it on these regularizers only."""
        return cls.penalty is not Regularizer.penalty or cls.penalty_grad is not Regularizer.penalty_grad

    @classmethod
    def layerwise(cls) -> bool:
        """Whether penalty_grad can add some parameters' gradients alone: there is no penalty, or its gradient is
        written in closed form (an override of penalty_grad, which honours `params`). The autograd default cannot."""
        return cls.penalty is Regularizer.penalty or cls.penalty_grad is not Regularizer.penalty_grad

    def post_step(self, model: MemberModel, lr: float) -> None:
        return None

    def on_eval(self, model: MemberModel, epoch: int, metrics: torch.Tensor) -> torch.Tensor | None:
        return None

    def on_end(self, model: MemberModel) -> bool:
        return False

    def record(self) -> list[dict] | None:
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None


class WeightScope:
    """Which parameters a weight penalty or decay acts on, per member: weights for every member using it; biases
    and batch-norm parameters only for the members whose own config asks (`biases`, `norms`).

    The flags are per member because a batched sweep puts `biases=true` and `biases=false` jobs in one population.
    A group no member asks for is left out entirely (no work, no gradient), decided once at construction.
    """

    def __init__(self, reg: Regularizer):
        self.masks: dict[str, torch.Tensor | None] = {"weights": None}
        for group in ("biases", "norms"):
            mask = reg.values(group)
            if bool(mask.any()):
                self.masks[group] = mask

    def terms(self, model: MemberModel):
        """(parameter viewed [K, -1], [K] 0/1 mask or None for all members) for each parameter in scope."""
        for group, mask in self.masks.items():
            for p in getattr(model, group):
                yield model.per_member(p), mask

    def total(self, model: MemberModel, per_param) -> torch.Tensor | None:
        """sum over in-scope parameters of per_param(view) -> [K], each member counting only its own scope."""
        parts = [per_param(v) if m is None else m * per_param(v) for v, m in self.terms(model)]
        return sum(parts) if parts else None

    def gradient(self, coeff: torch.Tensor) -> GradientTerm:
        """A term adding coeff[k] * derivative(w) to every in-scope parameter's gradient (see GradientTerm)."""
        return GradientTerm(self, coeff)


class GradientTerm:
    """grad += coeff[k] * derivative(w) (add), or w *= 1 - lr * coeff[k] (shrink), each member within its own scope,
    touching only members with coeff != 0.

    A sweep population holds many members without the penalty (baselines, other regularizers); they are usually
    one consecutive block, so the work is sliced to it. Which members, and the slices, are settled once here.
    """

    def __init__(self, scope: WeightScope, coeff: torch.Tensor):
        self.parts = []  # (group, [A, 1] coefficients, member slice or None for all)
        self.model, self.terms = None, []  # the model the views below were made for, and the views (see add)
        self.factors: tuple[float, list[torch.Tensor]] | None = None  # shrink's (lr, per-view factors)
        self.subsets: dict[tuple[int, ...], list[tuple]] = {}  # add's terms for a given list of parameters
        for group, mask in scope.masks.items():
            c = coeff if mask is None else coeff * mask
            on = c != 0
            if not bool(on.any()):
                continue
            rows = member_span(on)
            self.parts.append((group, (c if rows is None else c[rows]).view(-1, 1), rows))

    def add(self, model: MemberModel, derivative=None, params: list[torch.Tensor] | None = None) -> None:
        """derivative(w, out=...) an element-wise torch function (e.g. torch.sign), or None for w itself; to the
        gradients of `params` only when given. The views it works on are made once per model (parameters and
        gradients keep their memory: optim.FlatParams), and the derivative's values go into scratch reused every
        step: a fresh tensor of some hundred kilobytes costs page faults, which made torch.sign take 118 us
        instead of 10."""
        terms = self._terms(model, with_scratch=derivative is not None)
        if params is not None:
            key = tuple(map(id, params))
            if key not in self.subsets:
                self.subsets[key] = [t for t in terms if any(t[0] is p for p in params)]
            terms = self.subsets[key]
        for _, g, w, c, out in terms:
            g.addcmul_(w if out is None else derivative(w, out=out), c)

    def shrink(self, model: MemberModel, lr: float) -> None:
        """w *= 1 - lr * coeff[k] (decoupled decay), on the same members and slices as the gradient; the factors
        are computed once per learning rate, not every step. Members outside the slices would be multiplied by 1."""
        terms = self._terms(model, with_scratch=False)
        if self.factors is None or self.factors[0] != lr:
            self.factors = (lr, [1 - lr * c for _, _, _, c, _ in terms])
        for (_, _, w, _, _), f in zip(terms, self.factors[1]):
            w.mul_(f)

    def _terms(self, model: MemberModel, with_scratch: bool) -> list[tuple]:
        if self.model is not model:
            self.terms, self.model, self.factors = self._views(model, with_scratch), model, None
            self.subsets = {}
        return self.terms

    @staticmethod
    def _grad(p: torch.Tensor) -> torch.Tensor:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        return p.grad

    def _views(self, model: MemberModel, with_scratch: bool) -> list[tuple]:
        """(parameter, gradient, weights, [A, 1] coefficients, scratch or None) per parameter in scope; the last
        four [A, n] views."""
        terms = []
        for group, c, rows in self.parts:
            for p in getattr(model, group):
                # views, so an in-place add reaches .grad and a shrink the weights; detached, so neither needs
                # torch.no_grad() around it (its context manager cost more than the kernels of a small layer)
                g, w = self._grad(p).view(model.k, -1), model.per_member(p).detach()
                if rows is not None:
                    g, w = g[rows], w[rows]
                terms.append((p, g, w, c, torch.empty_like(w) if with_scratch else None))
        return terms


def broadcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-member [K] tensor viewed so it broadcasts against a [K, ...] tensor."""
    return v.view(-1, *([1] * (like.dim() - 1)))
