"""The presets' cells as Hydra configs, made from the regularizers' declarations:

  experiment/single  the `singles` preset: one option per cell (`l2_weak`, ...), from each regularizer's `singles`
                     (regularizers.singles_cells()); configs/experiment/singles.yaml sweeps them with glob(*)
  experiment/tune    the `tuned` preset: one option per grid point (`l2_1` ... `l2_5`, weakest first), from each
                     regularizer's `grid` (regularizers.tune_cells()); configs/experiment/tuned.yaml sweeps them and
                     `regbench report --tuned` picks each regularizer's best point on validation

A new regularizer brings its cells with it.
A cell is what a file `configs/experiment/single/<cell>.yaml` would be: `# @package _global_`, the regularizer
alone (`override /regularizers: [name]`) at the values it declares.

The group is put in Hydra's ConfigStore empty and filled the first time Hydra looks inside it: filling it imports
the regularizers, and so torch (seconds), which `regbench run --cfg job`, --help and shell completion do without.
"""

from __future__ import annotations

from typing import Any

from hydra.core.config_store import ConfigNode, ConfigStore
from omegaconf import OmegaConf

PARENT, NAME, TUNE = "experiment", "single", "tune"
GROUP = f"{PARENT}/{NAME}"


def cell_node(reg: str, values: dict[str, Any]) -> dict:
    """One cell's config: the regularizer alone, at `values` (its config's defaults for the rest)."""
    node: dict = {"defaults": [{"override /regularizers": [reg]}]}
    if values:
        node["regularizers"] = {reg: values}
    return node


class _Cells(dict):
    """A ConfigStore group (a dict of file name -> ConfigNode) that makes its options when first read. Every way
    ConfigStore reads a group goes through one of these methods. Hydra deep-copies the whole store for each
    composition (and launchers pickle it): a copy is a new, empty group, which fills itself the same way."""

    def __init__(self, name: str = NAME):
        super().__init__()
        self.name = name

    def __reduce__(self):
        return (_Cells, (self.name,))

    def _fill(self) -> None:
        if getattr(self, "_filled", False):
            return
        self._filled = True
        from regbench import regularizers

        group = f"{PARENT}/{self.name}"
        cells = regularizers.singles_cells() if self.name == NAME else regularizers.tune_cells()
        for cell, (reg, values) in cells.items():
            name = f"{cell}.yaml"
            node = OmegaConf.create(cell_node(reg, values))
            dict.__setitem__(
                self, name, ConfigNode(name=name, node=node, group=group, package="_global_", provider="regbench")
            )

    def __contains__(self, key) -> bool:
        self._fill()
        return super().__contains__(key)

    def __getitem__(self, key):
        self._fill()
        return super().__getitem__(key)

    def get(self, key, default=None):
        self._fill()
        return super().get(key, default)

    def __iter__(self):
        self._fill()
        return super().__iter__()

    def __len__(self) -> int:
        self._fill()
        return super().__len__()

    def keys(self):
        self._fill()
        return super().keys()

    def values(self):
        self._fill()
        return super().values()

    def items(self):
        self._fill()
        return super().items()


def register() -> None:
    """Put the groups in Hydra's ConfigStore (once; cheap: nothing is imported until Hydra reads them)."""
    parent = ConfigStore.instance().repo.setdefault(PARENT, {})
    for name in (NAME, TUNE):
        if not isinstance(parent.get(name), _Cells):
            parent[name] = _Cells(name)
