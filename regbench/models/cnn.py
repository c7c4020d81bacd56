"""Convolutional network: 1-D convolutions for sequences, 2-D for images, then a linear head.

Activations travel member-major and channels-last, [K, B, *S, C]: each layer is one batched matrix product of
all members' patches (layers.BatchedConv). The default shape (3 layers of 25 channels, stride 2) is the MNIST-1D
paper's CNN.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from regbench.errors import UsageError
from regbench.models import cnn_fast
from regbench.models.base import MemberModel, ModelHints
from regbench.models.layers import BatchedConv, BatchedLinear, Context, MemberBatchNorm, MemberDropout
from regbench.schema import param


@dataclass
class CnnConfig:
    name: str = "cnn"
    channels: int = param(25, "channels per convolutional layer", ge=1, le=4096)
    depth: int = param(3, "number of convolutional layers", ge=1, le=16)
    kernel_size: int = param(5, "kernel size (odd keeps lengths predictable)", ge=1, le=31)
    stride: int = param(2, "stride of every convolution", ge=1, le=8)


class CNN(MemberModel):
    kinds = ("sequence", "image")

    def __init__(self, cfg: CnnConfig, input_shape, kind: str, n_classes: int, gens, hints: ModelHints):
        super().__init__(len(gens))
        if kind == "sequence":
            self.dims, c_in, spatial = 1, 1, list(input_shape)
        elif kind == "image":
            self.dims, c_in, spatial = 2, input_shape[0], list(input_shape[1:])
        else:
            raise UsageError(f"model=cnn: needs sequence or image data, got {kind} data; use model=mlp")
        self.c_in = c_in
        self.input_drop = MemberDropout(hints.input_dropout, "dropout.input") if hints.input_dropout.any() else None
        self.convs, self.bns, self.drops = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        pad = cfg.kernel_size // 2
        for i in range(cfg.depth):
            self.convs.append(BatchedConv(gens, self.dims, c_in, cfg.channels, cfg.kernel_size, cfg.stride))
            if hints.batch_norm.any():
                self.bns.append(MemberBatchNorm(hints.batch_norm, cfg.channels))
                self.bns[-1].follows(self.convs[-1].bias)
            if hints.dropout.any():
                self.drops.append(MemberDropout(hints.dropout, f"dropout.{i}"))
            spatial = [(s + 2 * pad - cfg.kernel_size) // cfg.stride + 1 for s in spatial]
            patches = int(torch.tensor(spatial).prod()) * cfg.kernel_size**self.dims * c_in  # per example
            self.eval_width = max(self.eval_width, patches)
            if min(spatial) < 1:
                raise UsageError(
                    f"model.depth={cfg.depth}: the input {tuple(input_shape)} shrinks to nothing after layer "
                    f"{i + 1}; use fewer layers or model.stride=1"
                )
            c_in = cfg.channels
        self.features = cfg.channels * int(torch.tensor(spatial).prod())
        self.head = BatchedLinear(gens, self.features, n_classes)
        for layer in [*self.convs, self.head]:
            self.weights.append(layer.weight)
            self.biases.append(layer.bias)
        for bn in self.bns:
            self.norms += [bn.weight, bn.bias]

    def _fold(self, x: torch.Tensor) -> torch.Tensor:
        """[K, B, (C,) *S] per-member batches, or a shared [N, (C,) *S], to channels-last [K, B, *S, C] / [N, *S, C]
        (a view: the first layer's patches copy it anyway)."""
        return x.unsqueeze(-1) if self.dims == 1 else x.movedim(-3, -1)

    def forward(self, x, ctx: Context):
        if self.input_drop is not None:
            x = self.input_drop(x, ctx)
        h = self._fold(x)
        for i, conv in enumerate(self.convs):
            h = conv(h)  # [K, B, *S, C]
            if self.bns:
                h = self.bns[i](h.view(self.k, -1, h.shape[-1]), ctx).reshape(h.shape)
            h = self.drops[i].relu(h, ctx) if self.drops else h.relu()
        # the head's weights read features as nn.Conv's flatten does, channel-major: (C, *S)
        return self.head(h.movedim(-1, 2).reshape(self.k, h.shape[1], self.features))

    def fast_step(self, flushed: bool = False) -> cnn_fast.TrainStep | None:
        """The hand-written training step (cnn_fast.TrainStep); batch norm has none."""
        return None if self.bns else cnn_fast.TrainStep(self, flushed)
