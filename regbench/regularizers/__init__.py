"""Regularizer registry: name -> class. Adding one is a module here, a YAML in configs/regularizers/, one line."""

from __future__ import annotations

from regbench.errors import unknown_name
from regbench.regularizers.base import Batch, Regularizer
from regbench.regularizers.dropout import Dropout
from regbench.regularizers.l1 import L1
from regbench.regularizers.l2 import L2

REGULARIZERS: dict[str, type[Regularizer]] = {cls.name: cls for cls in (L1, L2, Dropout)}


def get(name: str) -> type[Regularizer]:
    if name not in REGULARIZERS:
        raise unknown_name("regularizers", name, REGULARIZERS)
    return REGULARIZERS[name]


__all__ = ["REGULARIZERS", "Batch", "Regularizer", "get"]
