"""model=torch: the user's own nn.Module, named by `model.target=package.module:Class`, trained as a population.

The class is imported and built with `model.kwargs`; constructor arguments the user did not give but the
signature names are filled from the data: num_classes / n_classes, in_channels (an image's channels; 1 for
sequences), input_shape / in_shape, in_features (the input's size, flattened). Its forward must map [B, ...]
inputs to [B, classes] logits. Everything else (stacking members, the regularizers' slots) is models/func.py.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import sys
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from regbench.errors import UsageError
from regbench.models.base import ModelHints
from regbench.models.func import FuncModel, places
from regbench.schema import param


@dataclass
class TorchConfig:
    name: str = "torch"
    target: str = param("", "the module's class as package.module:Class (importable here or from the working folder)")
    kwargs: dict = param(None, "keyword arguments of its constructor", factory=dict)
    keep_norm: bool = param(False, "batch norm on in every member (no batch_norm slot for the regularizer)")

    def check(self, key: str) -> None:
        load_class(self.target, key)


def load_class(target: str, key: str = "model") -> type:
    """The nn.Module subclass `target` names, or one UsageError line naming `{key}.target`."""
    where = f"{key}.target={target!r}" if target else f"{key}.target"
    if not target:
        raise UsageError(f"{where}: missing; name your nn.Module as model.target=package.module:Class")
    mod_name, sep, attr = target.partition(":")
    if not sep or not mod_name or not attr:
        raise UsageError(f"{where}: must be package.module:Class")
    if os.getcwd() not in sys.path and "" not in sys.path:  # the `regbench` script does not look in the cwd
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(mod_name)
    except Exception as e:  # noqa: BLE001 - any import failure is the user's module: one line, no traceback
        raise UsageError(f"{where}: cannot import {mod_name} ({type(e).__name__}: {_first_line(e)})") from None
    cls = module
    for part in attr.split("."):
        cls = getattr(cls, part, None)
        if cls is None:
            raise UsageError(f"{where}: {mod_name} has no {attr}")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise UsageError(f"{where}: not an nn.Module subclass")
    return cls


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else ""


def constructor_args(cls: type, kwargs: dict, input_shape, kind: str, n_classes: int) -> dict:
    """The user's kwargs, plus the data-given arguments the constructor names and the user left out."""
    try:
        names = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        names = {}
    given = {
        "num_classes": n_classes,
        "n_classes": n_classes,
        "in_channels": input_shape[0] if kind == "image" else 1,
        "input_shape": tuple(input_shape),
        "in_shape": tuple(input_shape),
        "in_features": math.prod(input_shape),
    }
    return {**{k: v for k, v in given.items() if k in names and k not in kwargs}, **kwargs}


def factory(cfg: TorchConfig, input_shape, kind: str, n_classes: int):
    """A function building one module (called under each member's seed), checked once: it builds, and maps a
    batch of 2 inputs to [2, n_classes] logits."""
    cls = load_class(cfg.target)
    make = partial(cls, **constructor_args(cls, dict(cfg.kwargs or {}), input_shape, kind, n_classes))
    where = f"model.target={cfg.target}"
    key = (cfg.target, repr(sorted((cfg.kwargs or {}).items())), tuple(input_shape), kind, n_classes)
    if key in _CHECKED:
        return make, _CHECKED[key]
    try:
        with torch.random.fork_rng(devices=[]):
            module = make()
    except Exception as e:  # noqa: BLE001
        raise UsageError(f"{where}: the constructor failed ({type(e).__name__}: {_first_line(e)})") from None
    x = torch.randn((2, *input_shape), generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):  # the global RNG as it was
            out = module.train()(x)
    except Exception as e:  # noqa: BLE001
        raise UsageError(
            f"{where}: its forward failed on a batch of shape {list(x.shape)} ({type(e).__name__}: {_first_line(e)})"
        ) from None
    shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if shape != [2, n_classes]:
        raise UsageError(f"{where}: returns {shape} for a batch of shape {list(x.shape)}; needs [2, {n_classes}] "
                         f"logits ([B, classes])")  # fmt: skip
    _CHECKED[key] = module
    return make, module


_CHECKED: dict[tuple, nn.Module] = {}  # one module per configuration and data shape, built and run once


class TorchModel(FuncModel):
    @classmethod
    def offers(cls, cfg, input_shape, kind, n_classes):
        if cfg is None:
            return frozenset({"dropout", "batch_norm", "residual"})
        _, module = factory(cfg, input_shape, kind, n_classes)
        return places(module, cfg.keep_norm)

    def __init__(self, cfg: TorchConfig, input_shape, kind: str, n_classes: int, gens, hints: ModelHints):
        make, _ = factory(cfg, input_shape, kind, n_classes)
        super().__init__(make, input_shape, kind, n_classes, gens, hints, cfg.keep_norm, f"model.target={cfg.target}")


__all__ = ["TorchConfig", "TorchModel", "constructor_args", "load_class"]
