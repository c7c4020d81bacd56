"""The hooks a regularizer may implement. Each regularizer is one module implementing only the ones it needs.

A population of K members holds one instance of each regularizer used by any member. The instance receives the
per-member configs (None for members that do not use it) and turns them into [K] tensors, so members with
different strengths, and baseline members with the regularizer off, train side by side in one computation.

Hooks, in the order the engine calls them:
  hints(h)                 before the model is built: set architecture switches (dropout p, batch norm)
  transform(batch, ctx)    each training step, before the forward pass: augment inputs or soften targets
  before_step(model, ctx)  each training step, after the transforms, before the forward pass: may change the
                           weights the step runs at (weight noise)
  after_backward(model, ctx)
                           each training step, once the loss's gradients exist, before the penalties' gradients
                           and the optimizer step: e.g. put back the weights before_step changed. A regularizer
                           with this hook turns off layer-by-layer updates (layerwise()), which would step each
                           layer before it runs
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

Declarations, read before anything is built:
  kinds                    the data kinds it takes (checked before launch)
  needs(cfg)               the places in the model it acts on (MemberModel.offers: "dropout", "batch_norm",
                           "residual", ...), checked before launch: a model without them refuses it in one line
  needs_autograd()         whether its members need autograd's step instead of a model's hand-written one (batch
                           norm); the engine and the sweep's grouping (sweep.apart) both follow it
  singles                  its cells in the `singles` preset, e.g. {"weak": {...}, "mid": {...}, "strong": {...}}
                           (regularizers.singles_cells())
  grid                     the `tuned` preset's grid over its strength, weakest first: {"strength": [1e-6, ...]}
                           (one key; regularizers.tune_cells()); none declared: its singles values

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
from regbench.models.layers import Context


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
    # the `singles` preset's cells: level -> config values; one level "" is one cell named after the regularizer
    singles: ClassVar[dict[str, dict[str, Any]]] = {"": {}}
    # the `tuned` preset's grid: {param: [values, weakest first]}; None: the singles values
    grid: ClassVar[dict[str, list] | None] = None

    @classmethod
    def tuning_grid(cls) -> list[dict[str, Any]]:
        """The `tuned` preset's points, weakest first: one config-values dict per point."""
        if cls.grid is None:
            return list(cls.singles.values())
        ((param, values),) = cls.grid.items()
        return [{param: v} for v in values]

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

    def before_step(self, model: MemberModel, ctx: Context) -> None:
        return None

    def after_backward(self, model: MemberModel, ctx: Context) -> None:
        return None

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
        """Whether the engine may update each layer as soon as its gradients are complete: there is no
        after_backward (it runs after the whole backward pass, so before any update), and penalty_grad can add some
        parameters' gradients alone (no penalty, or its gradient in closed form: an override of penalty_grad, which
        honours `params`; the autograd default cannot)."""
        closed_form = cls.penalty is Regularizer.penalty or cls.penalty_grad is not Regularizer.penalty_grad
        return closed_form and cls.after_backward is Regularizer.after_backward

    @classmethod
    def needs(cls, cfg) -> frozenset[str]:
        """The places in the model this regularizer, configured by `cfg`, acts on (see MemberModel.offers)."""
        return frozenset()

    @classmethod
    def needs_autograd(cls) -> bool:
        """Whether a population holding it must train through autograd rather than a model's hand-written step."""
        return False

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


def broadcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-member [K] tensor viewed so it broadcasts against a [K, ...] tensor."""
    return v.view(-1, *([1] * (like.dim() - 1)))
