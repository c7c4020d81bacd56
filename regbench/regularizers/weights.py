"""Which parameters a weight penalty or decay acts on, per member, and its gradient or shrinkage applied only to the
members that use it (l1, l2, elastic_net, weight_decay)."""

from __future__ import annotations

import torch

from regbench.models.base import MemberModel
from regbench.models.layers import member_span
from regbench.regularizers.base import Regularizer


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
        step: a fresh tensor of some hundred kilobytes costs page faults (torch.sign into a fresh one: 118 us; into
        the scratch: 10)."""
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
