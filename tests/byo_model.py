"""Users' own modules for the model=torch tests (imported as tests.byo_model:Name)."""

from __future__ import annotations

import torch
from torch import nn


class Branchy(nn.Module):
    """Data-dependent Python control flow: vmap cannot run it, so its members run one after another."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_features, 32), nn.ReLU(), nn.Dropout(0.5))
        self.head = nn.Linear(32, num_classes)

    def forward(self, x):
        h = self.body(x.flatten(1))
        if h.sum() > 0:  # a bool of a tensor: fine eagerly, refused by vmap
            h = h * 1.0
        return self.head(h)


class Plain(nn.Module):
    """No dropout, no batch norm: nothing for those regularizers to act on."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, num_classes))

    def forward(self, x):
        return self.net(x)


class WrongShape(Plain):
    def forward(self, x):
        return self.net(x).unsqueeze(1)


class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        raise ValueError("no such layer size")


NotAModule = torch.optim.SGD
