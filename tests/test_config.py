"""Every option of every config group composes and validates; bad values fail naming their key."""

from __future__ import annotations

import itertools

import pytest

from regbench import data, models, regularizers
from regbench.config import validate_config
from regbench.errors import UsageError
from regbench.preflight import options

REG_CHOICES = [[]] + [[r] for r in regularizers.REGULARIZERS] + [list(regularizers.REGULARIZERS)]


def test_every_yaml_option_has_a_registered_schema():
    assert set(options("dataset")) == set(data.DATASETS)
    assert set(options("model")) == set(models.MODELS)
    assert set(options("regularizers")) == set(regularizers.REGULARIZERS)


# Datasets that read the user's own file need its path; validation does not open it.
REQUIRED = {"csv": ["dataset.path=data.csv"], "npz": ["dataset.path=data.npz"]}
# model=torch needs the user's module (validation imports it)
REQUIRED["torch"] = ["model.target=regbench.models.examples:SmallConvNet"]


@pytest.mark.parametrize("dataset,model,regs", list(itertools.product(data.DATASETS, models.MODELS, REG_CHOICES)))
def test_every_combination_composes_and_validates(compose_cfg, dataset, model, regs):
    required = REQUIRED.get(dataset, []) + REQUIRED.get(model, [])
    cfg = compose_cfg(f"dataset={dataset}", f"model={model}", f"regularizers=[{','.join(regs)}]", *required)
    spec = validate_config(cfg)
    assert spec.dataset.name == dataset
    assert spec.model.name == model
    assert list(spec.regularizers) == regs
    for name, reg_cfg in spec.regularizers.items():
        assert isinstance(reg_cfg, regularizers.get(name).Config)


def test_default_is_the_documented_comparison(compose_cfg):
    spec = validate_config(compose_cfg())
    assert (spec.dataset.name, spec.model.name, list(spec.regularizers)) == (
        "mnist1d",
        "mlp",
        ["l2", "dropout"],
    )
    assert spec.trainer.seeds == 3


@pytest.mark.parametrize(
    "override,message",
    [
        ("regularizers.dropout.p=1.5", "regularizers.dropout.p=1.5: must be in [0.0, 1.0)"),
        ("regularizers.l2.strength=-1", "regularizers.l2.strength=-1.0: must be in [0.0, inf)"),
        ("regularizers.dropout.p=oops", "regularizers.dropout.p='oops': must be a number"),
        ("trainer.lr=0", "trainer.lr=0.0: must be in (0.0, 10.0]"),
        ("trainer.seeds=0", "trainer.seeds=0: must be in [1, 10000]"),
        ("trainer.batch_size=0", "trainer.batch_size=0: must be in [1, inf)"),
        ("trainer.device=tpu", "trainer.device='tpu': must be one of auto, cpu, cuda"),
        ("trainer.epochs=2.5", "trainer.epochs=2.5: must be an integer"),
        ("dataset.val_fraction=1", "dataset.val_fraction=1.0: must be in (0.0, 1.0)"),
        ("dataset.val_fraction=0", "dataset.val_fraction=0.0: must be in (0.0, 1.0)"),
        ("model.width=0", "model.width=0: must be in [1, 65536]"),
    ],
)
def test_bad_values_name_the_key_and_the_allowed_range(compose_cfg, override, message):
    with pytest.raises(UsageError) as err:
        validate_config(compose_cfg(override))
    assert str(err.value) == message


def test_unknown_key_lists_allowed_keys(compose_cfg):
    cfg = compose_cfg("++regularizers.dropout.rate=0.5")
    with pytest.raises(UsageError, match=r"regularizers.dropout.rate: unknown key; allowed: p, input_p"):
        validate_config(cfg)
