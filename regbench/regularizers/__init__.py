"""Regularizer registry: name -> class. Adding one is a module here, a YAML in configs/regularizers/ and its entry
below (import and class); its `singles` preset cells, `regbench list` and the tests that cover every regularizer
follow from the registry."""

from __future__ import annotations

from regbench.errors import unknown_name
from regbench.regularizers.augment import Augment
from regbench.regularizers.base import Batch, Regularizer
from regbench.regularizers.batch_norm import BatchNorm
from regbench.regularizers.cutout import Cutout
from regbench.regularizers.dropout import Dropout
from regbench.regularizers.early_stopping import EarlyStopping
from regbench.regularizers.elastic_net import ElasticNet
from regbench.regularizers.gaussian_noise import GaussianNoise
from regbench.regularizers.l1 import L1
from regbench.regularizers.l2 import L2
from regbench.regularizers.label_smoothing import LabelSmoothing
from regbench.regularizers.max_norm import MaxNorm
from regbench.regularizers.mixup import Mixup
from regbench.regularizers.stochastic_depth import StochasticDepth
from regbench.regularizers.weight_decay import WeightDecay
from regbench.regularizers.weight_noise import WeightNoise

REGULARIZERS: dict[str, type[Regularizer]] = {
    cls.name: cls
    for cls in (
        L1,
        L2,
        ElasticNet,
        WeightDecay,
        Dropout,
        BatchNorm,
        Augment,
        EarlyStopping,
        LabelSmoothing,
        Mixup,
        Cutout,
        MaxNorm,
        GaussianNoise,
        WeightNoise,
        StochasticDepth,
    )
}


def get(name: str) -> type[Regularizer]:
    if name not in REGULARIZERS:
        raise unknown_name("regularizers", name, REGULARIZERS)
    return REGULARIZERS[name]


def _cells(levels) -> dict[str, tuple[str, dict]]:
    """Cell name (`<regularizer>_<level>`, or the regularizer's name alone for a level "") -> (regularizer, the
    config values it sets), over levels(cls): {level: values} for each registered regularizer."""
    return {
        f"{name}_{level}" if level else name: (name, dict(values))
        for name, cls in REGULARIZERS.items()
        for level, values in levels(cls).items()
    }


def singles_cells() -> dict[str, tuple[str, dict]]:
    """The `singles` preset's cells, from each regularizer's declared `singles`: `l2_weak`, ..., or the
    regularizer's name for a level ""."""
    return _cells(lambda cls: cls.singles)


def tune_cells() -> dict[str, tuple[str, dict]]:
    """The `tuned` preset's cells, from each regularizer's declared `grid` (its `singles` values where it declares
    none): `l2_1`, ..., numbered weakest first; the regularizer's name alone for a one-point grid."""

    def numbered(cls) -> dict:
        grid = cls.tuning_grid()
        return {str(i) if len(grid) > 1 else "": values for i, values in enumerate(grid, 1)}

    return _cells(numbered)


__all__ = ["REGULARIZERS", "Batch", "Regularizer", "get", "singles_cells", "tune_cells"]
