"""Model registry: name -> (schema, class). Every model is member-batched: parameters carry a leading K axis."""

from __future__ import annotations

from typing import NamedTuple

from regbench import rng
from regbench.errors import unknown_name
from regbench.models.base import MemberModel, ModelHints
from regbench.models.cnn import CNN, CnnConfig
from regbench.models.images import ResNet, ResNetConfig, Vgg, VggConfig
from regbench.models.layers import Context
from regbench.models.mlp import MLP, MlpConfig
from regbench.models.torch_model import TorchConfig, TorchModel


class ModelEntry(NamedTuple):
    schema: type
    cls: type
    summary: str


MODELS: dict[str, ModelEntry] = {
    "mlp": ModelEntry(MlpConfig, MLP, "multi-layer perceptron, ReLU (any data kind)"),
    "cnn": ModelEntry(CnnConfig, CNN, "convolutional net: 1-D for sequences, 2-D for images"),
    "resnet": ModelEntry(ResNetConfig, ResNet, "pre-activation ResNet (CIFAR stem), ResNet-18 by default (images)"),
    "vgg": ModelEntry(VggConfig, Vgg, "VGG-style conv-BN-ReLU stages, dropout in the classifier (images)"),
    "torch": ModelEntry(TorchConfig, TorchModel, "your own nn.Module (model.target=package.module:Class)"),
}


def get(name: str) -> ModelEntry:
    if name not in MODELS:
        raise unknown_name("model", name, MODELS)
    return MODELS[name]


def build(cfg, input_shape, kind: str, n_classes: int, seeds: list[int], hints: ModelHints) -> MemberModel:
    """One member-batched model; member k's initial weights depend only on seeds[k]."""
    gens = [rng.generator(s, "init") for s in seeds]
    return get(cfg.name).cls(cfg, tuple(input_shape), kind, n_classes, gens, hints)


__all__ = ["MODELS", "Context", "MemberModel", "ModelHints", "build", "get"]
