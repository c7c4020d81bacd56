"""Image architectures as plain nn.Modules: a CIFAR-style pre-activation ResNet and a small VGG.

They are written the way a textbook writes them, one network, no member axis: FuncModel (models/func.py) trains K
copies of them at once through torch.func. What regularizers act on is found by layer type there: each nn.Dropout
is a slot of the dropout regularizer, each nn.BatchNorm2d one of batch_norm's (unless the config keeps
normalization in every member), each StochasticDepth one of stochastic_depth's.

Both take images [C, H, W] of any size: the strided convolutions and the (ceil-mode) pools make a 1x1 image 1x1
again, so 8x8 digits, 28x28 MNIST and 32x32 CIFAR-10 go through the same layers. Sequences are refused
(kinds = ("image",)): model=cnn takes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from torch import nn

from regbench.models.base import ModelHints
from regbench.models.func import FuncModel, StochasticDepth
from regbench.schema import param

# Blocks per stage for each depth (He et al. 2016, Table 1; depth counts weighted layers: 2 per block, stem, head)
RESNET_BLOCKS = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}

# VGG configurations (Simonyan and Zisserman 2015, Table 1, with BN as in torchvision's vgg*_bn): channels as
# multiples of the width (1 = 64 channels at the default width), "M" a 2x2 max-pool
VGG_LAYERS = {
    11: (1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"),
    13: (1, 1, "M", 2, 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"),
    16: (1, 1, "M", 2, 2, "M", 4, 4, 4, "M", 8, 8, 8, "M", 8, 8, 8, "M"),
}


def _width():
    """The width field both networks' schemas have (a fresh dataclass field each: one cannot serve two classes)."""
    return param(64, "channels of the first stage (then 2x, 4x, 8x)", ge=1, le=1024)


def _norm():
    """The norm field both networks' schemas have."""
    return param(
        "batch",
        "batch: batch norm is part of the architecture, in every member; none: its layers are the batch_norm "
        "regularizer's (identity in members without it)",
        choices=["batch", "none"],
    )


class PreActBlock(nn.Module):
    """He et al. 2016, "Identity mappings in deep residual networks": BN-ReLU-conv-BN-ReLU-conv on the branch, the
    identity (or a 1x1 projection of the pre-activated input, where the shape changes) on the shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, bias=False)
        self.drop_path = StochasticDepth()

    def forward(self, x):
        out = self.bn1(x).relu()
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        branch = self.conv2(self.bn2(self.conv1(out)).relu())
        return shortcut + self.drop_path(branch)


class PreActResNet(nn.Module):
    """CIFAR stem (one 3x3 conv, no max-pool), four stages of widths w, 2w, 4w, 8w (stride 2 from the second on),
    a final BN-ReLU (the pre-activation design's last blocks leave it undone), global average pool, linear head."""

    def __init__(self, blocks=(2, 2, 2, 2), width: int = 64, in_channels: int = 3, n_classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, 1, padding=1, bias=False)
        layers, c_in = [], width
        for stage, n in enumerate(blocks):
            c_out = width * 2**stage
            stride = 2 if stage > 0 else 1
            for i in range(n):
                layers.append(PreActBlock(c_in, c_out, stride if i == 0 else 1))
                c_in = c_out
        self.blocks = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(c_in)
        self.head = nn.Linear(c_in, n_classes)

    def forward(self, x):
        h = self.bn(self.blocks(self.stem(x))).relu()
        return self.head(h.mean(dim=(2, 3)))


class VGG(nn.Module):
    """conv3x3-BN-ReLU layers with 2x2 max-pools between stages, global average pool (the pools leave 1x1 of a
    32x32 image), and VGG's classifier: two hidden layers with dropout before each, at 8w units rather than 4096."""

    def __init__(self, layers=VGG_LAYERS[11], width: int = 64, in_channels: int = 3, n_classes: int = 10):
        super().__init__()
        features, c_in = [], in_channels
        for v in layers:
            if v == "M":
                features.append(nn.MaxPool2d(2, ceil_mode=True))
                continue
            c_out = width * v
            features += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
            c_in = c_out
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(
            nn.Dropout(),
            nn.Linear(c_in, c_in),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(c_in, c_in),
            nn.ReLU(),
            nn.Linear(c_in, n_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x).mean(dim=(2, 3)))


@dataclass
class ResNetConfig:
    name: str = "resnet"
    depth: int = param(18, "ResNet depth: 10, 18 or 34 (blocks per stage 1111, 2222, 3463)", choices=[10, 18, 34])
    width: int = _width()
    norm: str = _norm()


@dataclass
class VggConfig:
    name: str = "vgg"
    depth: int = param(11, "VGG depth: 11, 13 or 16 (configurations A, B, D)", choices=[11, 13, 16])
    width: int = _width()
    norm: str = _norm()


class _ImageModel(FuncModel):
    """K members of one of the networks above. The registry's constructor; what the network offers the
    regularizers is fixed by its type and the norm option: no need to build one to say."""

    kinds = ("image",)
    offered_with = {"batch_norm": "model.norm=none"}

    def __init_subclass__(cls, network: type[nn.Module], layouts: dict, places: frozenset[str]):
        """network(layout, width, in_channels, n_classes) is the plain module; layouts: model.depth -> its
        layout (blocks per stage, or VGG's configuration); places: what it has besides its batch norm layers."""
        super().__init_subclass__()
        cls.network, cls.layouts, cls.places = network, layouts, places

    @classmethod
    def module(cls, cfg, input_shape, n_classes: int) -> nn.Module:
        """One member's plain nn.Module, as a textbook loop would train it."""
        return cls.network(cls.layouts[cfg.depth], cfg.width, input_shape[0], n_classes)

    @classmethod
    def offers(cls, cfg, input_shape, kind, n_classes):
        norm = cfg is None or cfg.norm == "none"  # norm=batch: BN is on in every member, nothing to switch
        return cls.places | ({"batch_norm"} if norm else set())

    def __init__(self, cfg, input_shape, kind: str, n_classes: int, gens, hints: ModelHints):
        make = partial(self.module, cfg, input_shape, n_classes)
        super().__init__(make, input_shape, kind, n_classes, gens, hints, cfg.norm == "batch", f"model={cfg.name}")


class ResNet(_ImageModel, network=PreActResNet, layouts=RESNET_BLOCKS, places=frozenset({"residual"})):
    pass


class Vgg(_ImageModel, network=VGG, layouts=VGG_LAYERS, places=frozenset({"dropout"})):
    pass
