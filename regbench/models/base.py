"""What regularizers tell the model builder, and what every member-batched model offers them in return."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from regbench.models.layers import BatchedConv, BatchedLinear


@dataclass
class ModelHints:
    """Per-member architecture switches, each a [K] tensor; zeros/False reproduce the plain network."""

    dropout: torch.Tensor  # hidden-layer dropout probability per member
    input_dropout: torch.Tensor  # dropout probability on the input per member
    batch_norm: torch.Tensor  # bool: batch norm after each hidden layer, per member
    stochastic_depth: torch.Tensor  # drop probability of the last residual block per member (models with blocks)

    @classmethod
    def plain(cls, k: int) -> ModelHints:
        return cls(torch.zeros(k), torch.zeros(k), torch.zeros(k, dtype=torch.bool), torch.zeros(k))


class MemberModel(nn.Module):
    """Base of member-batched models. Subclasses fill the three parameter lists the regularizers need."""

    k: int
    kinds: tuple[str, ...] = ("sequence", "image", "table")  # data kinds it takes: checked before any job starts
    # place (see offers) -> the option under which this model offers it, where another configuration does: the
    # refusal of a regularizer needing that place names it
    offered_with: dict[str, str] = {}
    # elements per example of the widest tensor the forward pass holds (train/evaluate.py sizes its chunks by it,
    # to keep them in cache); a CNN's im2col patches are several times its input
    eval_width: int = 256

    @classmethod
    def offers(cls, cfg, input_shape: tuple[int, ...], kind: str, n_classes: int) -> frozenset[str]:
        """The places in this architecture a regularizer can act on (Regularizer.needs): "dropout" (layers that
        drop), "input_dropout", "batch_norm" (normalization layers it switches on), "residual" (residual blocks,
        for stochastic depth). Asked before any job starts; a model built from the user's module looks inside it.
        cfg None: what some configuration of this model offers (the refusal's list of models that fit)."""
        return frozenset({"dropout", "input_dropout", "batch_norm"})

    def __init__(self, k: int):
        super().__init__()
        self.k = k
        self.weights: list[nn.Parameter] = []  # linear/conv weight tensors (penalised by default)
        self.biases: list[nn.Parameter] = []
        self.norms: list[nn.Parameter] = []  # batch-norm scale and shift
        self._layer_of: dict[int, nn.Module] | None = None  # weight_rows' lookup: which layer owns each weight

    def fast_step(self, flushed: bool = False):
        """A hand-written training step, where the model has one (see models/mlp_fast.py), else None: autograd.

        step(x, y, ctx, done=None) -> [K] bool (the member's loss is finite) writes every parameter's gradient;
        step.layers() lists each layer's parameters, and done(i) says layer i's gradients are complete. `flushed`:
        the step runs with denormals flushed to zero on every thread (train/denormals.py)."""
        return None

    def per_member(self, t: torch.Tensor) -> torch.Tensor:
        """View any parameter as [K, -1] (conv weights fold members into their first axis)."""
        return t.reshape(self.k, -1)

    def member_tensors(self) -> list[torch.Tensor]:
        """Every parameter and per-member buffer (running statistics): a member's whole state, K-major."""
        k = self.k
        buffers = [b for b in self.buffers() if b.dim() > 0 and b.shape[0] % k == 0]
        return list(self.parameters()) + buffers

    def weight_rows(self, t: torch.Tensor) -> torch.Tensor:
        """View a weight as [K, units, fan_in]: one row per output unit (for max-norm constraints, every step)."""
        layer = (self._layer_of or {}).get(id(t))
        if layer is None or layer.weight is not t:  # found once; found again if the model was copied
            # by type, not by duck-typing on a method name: dropout's `rows` means something else
            self._layer_of = {id(m.weight): m for m in self.modules() if isinstance(m, (BatchedLinear, BatchedConv))}
            layer = self._layer_of[id(t)]
        return layer.rows()
