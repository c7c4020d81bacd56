"""Small nn.Modules for model=torch: examples of the user's own module, used by the docs and the tests.

regbench run model=torch model.target=regbench.models.examples:SmallConvNet regularizers=[dropout,batch_norm]
"""

from __future__ import annotations

import torch
from torch import nn

from regbench.models.func import StochasticDepth


class SmallConvNet(nn.Module):
    """Two convolutions (2-D for images [C, H, W], 1-D for sequences [L]), batch norm, dropout, a linear head.
    Its dropout's p is replaced by the dropout regularizer's (0 in baseline members); its batch norms are on only
    in batch_norm members unless model.keep_norm=true."""

    def __init__(self, input_shape, num_classes: int, channels: int = 16, p: float = 0.5):
        super().__init__()
        image = len(input_shape) == 3
        conv, bn = (nn.Conv2d, nn.BatchNorm2d) if image else (nn.Conv1d, nn.BatchNorm1d)
        self.sequence = not image
        c_in = input_shape[0] if image else 1
        self.features = nn.Sequential(
            conv(c_in, channels, 3, padding=1),
            bn(channels),
            nn.ReLU(),
            conv(channels, channels, 3, stride=2, padding=1),
            bn(channels),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2) if image else nn.AdaptiveAvgPool1d(4),
            nn.Flatten(),
        )
        self.drop = nn.Dropout(p)
        self.head = nn.Linear(channels * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.sequence:
            x = x.unsqueeze(1)  # [B, L] -> [B, 1, L]
        return self.head(self.drop(self.features(x)))


class ResidualMLP(nn.Module):
    """An MLP of residual blocks x + drop_path(f(x)), for the stochastic_depth regularizer (the "residual" slot)."""

    def __init__(self, in_features: int, num_classes: int, width: int = 64, blocks: int = 3):
        super().__init__()
        self.inp = nn.Linear(in_features, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.ReLU(), nn.Linear(width, width)) for _ in range(blocks))
        self.drop_paths = nn.ModuleList(StochasticDepth() for _ in range(blocks))
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x.flatten(1))
        for block, drop_path in zip(self.blocks, self.drop_paths):
            h = h + drop_path(block(h))
        return self.head(h.relu())
