"""Every config YAML states exactly its dataclass schema's defaults, so the two sources of a default never drift.

`regbench list` prints the dataclass defaults; a run uses the YAML. A field missing from a YAML, an extra key, or a
value that differs from the schema's default fails here with the file and the key named.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from regbench import data, loggers, models, regularizers
from regbench.config import TrainerConfig

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def _yamls(group: str) -> list[Path]:
    return sorted((CONFIGS / group).glob("*.yaml"))


def _load(path: Path) -> dict:
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def _defaults(schema: type) -> dict:
    out = {}
    for f in dataclasses.fields(schema):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        else:
            out[f.name] = dataclasses.MISSING
    return out


def _same(a, b) -> bool:
    # true == 1 in Python; a bool default must be a YAML bool and a number must not be one.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def disagreements(values: dict, schema: type) -> list[str]:
    """What differs between a YAML's values and `schema`'s defaults, one line per key."""
    defaults = _defaults(schema)
    problems = [f"{k}: in the YAML, not in {schema.__name__}" for k in values if k not in defaults]
    for key, default in defaults.items():
        if key not in values:
            problems.append(f"{key}: missing from the YAML ({schema.__name__} default {default!r})")
        elif not _same(values[key], default):
            problems.append(f"{key}: YAML {values[key]!r}, {schema.__name__} default {default!r}")
    return problems


def _named_group_cases(group: str, registry: dict) -> list:
    return [pytest.param(path, registry, id=f"{group}/{path.stem}") for path in _yamls(group)]


@pytest.mark.parametrize(
    "path,registry", _named_group_cases("dataset", data.DATASETS) + _named_group_cases("model", models.MODELS)
)
def test_dataset_and_model_yamls_state_their_schema_defaults(path, registry):
    values = _load(path)
    name = values.get("name")
    assert name == path.stem, f"{path}: name {name!r} should be the option's name {path.stem!r}"
    assert name in registry, f"{path}: {name!r} is not registered"
    assert disagreements(values, registry[name].schema) == [], path


@pytest.mark.parametrize("path", _yamls("regularizers"), ids=lambda p: p.stem)
def test_regularizer_yamls_state_their_schema_defaults(path):
    values = _load(path)
    # A regularizer's YAML nests its fields under its own name (regularizers.dropout.p, ...).
    assert list(values) == [path.stem], f"{path}: one top-level key, {path.stem!r}"
    fields = values[path.stem] or {}
    assert disagreements(fields, regularizers.get(path.stem).Config) == [], path


@pytest.mark.parametrize("path", _yamls("logger"), ids=lambda p: p.stem)
def test_logger_yamls_state_their_schema_defaults(path):
    values = _load(path)
    assert list(values) == [path.stem], f"{path}: one top-level key, {path.stem!r}"
    assert disagreements(values[path.stem] or {}, loggers.get(path.stem).schema) == [], path


@pytest.mark.parametrize("path", _yamls("trainer"), ids=lambda p: p.stem)
def test_trainer_yamls_state_the_trainer_defaults(path):
    assert disagreements(_load(path), TrainerConfig) == [], path


@pytest.mark.parametrize(
    "group,registry",
    [
        ("dataset", data.DATASETS),
        ("model", models.MODELS),
        ("regularizers", regularizers.REGULARIZERS),
        ("logger", loggers.LOGGERS),
    ],
)
def test_every_registered_option_has_a_yaml(group, registry):
    assert {p.stem for p in _yamls(group)} == set(registry)


def test_a_disagreement_is_reported():
    @dataclasses.dataclass
    class Schema:
        a: float = 0.5
        flag: bool = True
        extra: int = 3

    assert disagreements({"a": 0.5, "flag": True, "extra": 3}, Schema) == []
    problems = disagreements({"a": 0.25, "flag": 1, "other": 0}, Schema)
    assert problems == [
        "other: in the YAML, not in Schema",
        "a: YAML 0.25, Schema default 0.5",
        "flag: YAML 1, Schema default True",
        "extra: missing from the YAML (Schema default 3)",
    ]
