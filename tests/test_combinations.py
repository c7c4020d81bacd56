"""Every regularizer trains beside every other: each pair, and the whole singles preset, as one population.

A pair that cannot share a population turns batching off for a whole sweep (the launcher falls back to one job at
a time), so these build the populations the batched launcher would and train them for a step or two.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from regbench import models, regularizers, sweep
from regbench.config import validate_config
from regbench.models.base import ModelHints
from regbench.models.layers import MemberDropout
from regbench.paths import config_dir
from regbench.singles import register as register_singles

TINY = ["dataset.num_samples=300", "trainer.steps=2", "trainer.seeds=1", "trainer.progress=off"]
# model -> its overrides, and the dataset it trains on here (None: TINY's MNIST-1D). The MLP and the CNN take every
# regularizer but stochastic depth, which needs residual blocks: the ResNet (tiny, on 8x8 digits, its BN layers
# batch_norm's to switch) takes its pairs.
MODELS = {
    "mlp": ([], None),
    "cnn": (["model.channels=4"], None),
    "resnet": (["model.width=4", "model.depth=10", "model.norm=none"], ["dataset=digits", "dataset.train_size=200"]),
}
PAIRS = list(itertools.combinations(sorted(regularizers.REGULARIZERS), 2))
NEEDS_RESIDUAL = {n for n, cls in regularizers.REGULARIZERS.items() if "residual" in cls.needs(cls.Config())}


def _pairs(model: str) -> list[tuple[str, str]]:
    """The pairs trained on `model`: those it takes, and on the ResNet only the pairs the others cannot take."""
    if model == "resnet":
        return [p for p in PAIRS if NEEDS_RESIDUAL & set(p)]
    return [p for p in PAIRS if not NEEDS_RESIDUAL & set(p)]


def _train_all(configs: list, model: str, compose_cfg) -> dict[int, dict]:
    """Train the jobs as the batched launcher would, each on `model`. Composing is what costs here (a second a
    job), so callers compose a few configs and build the jobs' variants from their nodes."""
    overrides, dataset = MODELS[model]
    composed = compose_cfg(f"model={model}", *overrides, *(dataset or []))
    jobs = []
    for i, cfg in enumerate(configs):
        cfg = cfg.copy()
        cfg.model = composed.model
        if dataset:
            cfg.dataset = composed.dataset
        jobs.append(sweep.Job(i, cfg, validate_config(cfg)))
    assert len({sweep.group_key(j.spec) for j in jobs}) == 1  # one group: the jobs pool into one population
    return dict(sweep.train_jobs(jobs, budget_bytes=1 << 34))


def test_every_pair_is_trained_on_some_model():
    assert set(PAIRS) == {p for model in MODELS for p in _pairs(model)}


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_pair_of_regularizers_trains_in_one_population(compose_cfg, model):
    every = compose_cfg(*TINY, f"regularizers=[{','.join(sorted(regularizers.REGULARIZERS))}]")
    configs = []
    pairs = _pairs(model)
    for a, b in pairs:
        cfg = every.copy()
        cfg.regularizers = {a: every.regularizers[a], b: every.regularizers[b]}
        configs.append(cfg)
    records = _train_all(configs, model, compose_cfg)
    assert len(records) == len(pairs)
    for i, (a, b) in enumerate(pairs):
        (member,) = [m for m in records[i]["members"] if m["arm"] != "baseline"]
        assert member["arm"] == f"{a}+{b}" and set(member["regularizers"]) == {a, b}
        assert member["final"]["train_loss"] is not None, (a, b)


@pytest.fixture(scope="module")
def singles():
    """The singles preset's jobs, composed once for both models: every option Hydra lists in experiment/single."""
    GlobalHydra.instance().clear()
    register_singles()
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cells = GlobalHydra.instance().config_loader().get_group_options("experiment/single")
        jobs = [compose("config", overrides=["experiment=singles", f"+experiment/single={c}", *TINY]) for c in cells]
    GlobalHydra.instance().clear()
    assert sorted(cells) == sorted(regularizers.singles_cells())
    return jobs


@pytest.mark.parametrize("model", sorted(MODELS))
def test_the_singles_preset_trains_as_batched_populations(compose_cfg, singles, model):
    """Stochastic depth's cells on the ResNet (singles.yaml leaves them out elsewhere), every other cell on the
    MLP and the CNN."""
    takes = NEEDS_RESIDUAL if model == "resnet" else set(regularizers.REGULARIZERS) - NEEDS_RESIDUAL
    jobs = [c for c in singles if set(c.regularizers) <= takes]
    records = _train_all(jobs, model, compose_cfg)
    assert len(records) == len(jobs)
    arms = {m["arm"] for r in records.values() for m in r["members"]}
    assert arms == {"baseline", *takes}


def test_max_norm_finds_the_weight_layers_beside_dropout_layers():
    """Dropout has a `rows` method of its own: the weight-layer lookup must not take it for a weight layer."""
    from regbench.models.mlp import MlpConfig

    hints = ModelHints.plain(2)
    hints.dropout = torch.tensor([0.0, 0.5])
    model = models.build(MlpConfig(), (40,), "sequence", 10, [0, 1], hints)
    assert any(isinstance(m, MemberDropout) for m in model.modules())
    for w in model.weights:
        assert model.weight_rows(w).shape[0] == 2
