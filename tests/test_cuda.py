"""The CUDA path: the training step captured as a CUDA graph does what the eager step does. Needs a GPU (skipped
without one; the CPU suite covers the same engine eagerly)."""

from __future__ import annotations

import pytest
import torch

from regbench import data
from regbench.config import validate_config
from regbench.train import engine
from regbench.train.engine import train_population
from regbench.train.population import members_for

from .conftest import TINY

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CASES = [
    ("mlp", "l2,dropout"),
    ("mlp", "augment,gaussian_noise,mixup,l1"),
    ("cnn", "cutout,augment,batch_norm"),
    ("cnn", "l2,dropout,label_smoothing"),  # the CNN's hand-written step (models/cnn_fast.py) in a CUDA graph
    ("mlp", "early_stopping,label_smoothing,max_norm,weight_decay,elastic_net,batch_norm"),
]


@pytest.fixture
def graph_steps(monkeypatch):
    """The CudaGraphStep objects the engine makes, to check that it captured graphs rather than ran eagerly."""
    made = []

    class Spy(engine.cuda_graph.CudaGraphStep):
        def __init__(self, *args):
            super().__init__(*args)
            made.append(self)

    monkeypatch.setattr(engine.cuda_graph, "CudaGraphStep", Spy)
    return made


def _train(compose_cfg, model, regs, *overrides):
    early = ["trainer.epochs=6", "regularizers.early_stopping.patience=1"] if "early_stopping" in regs else []
    spec = validate_config(compose_cfg(*TINY, f"model={model}", f"regularizers=[{regs}]", *early, *overrides))
    splits = data.load(spec.dataset).to("cuda")
    return train_population(splits, spec.model, spec.trainer, members_for(spec), "cuda")


@pytest.mark.parametrize("model,regs", CASES)
def test_cuda_graph_step_trains_as_the_eager_step(compose_cfg, model, regs, graph_steps):
    graphed = _train(compose_cfg, model, regs)
    (steps,) = graph_steps
    assert steps.failed is None and steps.graphs, "the step ran eagerly, not as a captured graph"
    eager = _train(compose_cfg, model, regs, "trainer.cuda_graph=false")
    assert len(graph_steps) == 1  # the eager run made none
    assert graphed.frozen_at == eager.frozen_at
    torch.testing.assert_close(graphed.final, eager.final, rtol=0, atol=0)
    assert graphed.history == eager.history  # every evaluation (no member diverges here: no NaN)
    if any(e is not None and e < graphed.epochs for e in graphed.frozen_at):
        # members froze (early stopping) while others trained on: the step gained a snapshot and a restore,
        # captured as a second graph
        assert set(steps.graphs) == {False, True}


def test_cuda_members_match_themselves_trained_alone(compose_cfg, graph_steps):
    spec = validate_config(compose_cfg(*TINY, "trainer.seeds=3", "regularizers=[l2,dropout]"))
    splits = data.load(spec.dataset).to("cuda")
    members = members_for(spec)
    together = train_population(splits, spec.model, spec.trainer, members, "cuda")
    for j in (1, 4):
        alone = train_population(splits, spec.model, spec.trainer, [members[j]], "cuda")
        # cuBLAS may pick another kernel for another batch count: equal up to rounding, not bit for bit
        torch.testing.assert_close(alone.final[0], together.final[j], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "overrides",
    [
        ["dataset=digits", "model=torch", "model.target=regbench.models.examples:SmallConvNet"],
        ["dataset=digits", "model=resnet", "model.depth=10", "model.width=4", "model.norm=none"],
    ],
    ids=["torch", "resnet"],
)
def test_cuda_func_models_train_members_as_they_train_alone(compose_cfg, overrides):
    """The user's module and the ResNet through torch.func on the GPU (no CUDA graph: FuncModel is not graphable):
    a member in a population equals itself alone."""
    regs = "dropout,batch_norm,l2" if "model=torch" in overrides else "stochastic_depth,batch_norm,l2"
    spec = validate_config(compose_cfg(*TINY[1:], *overrides, f"regularizers=[{regs}]", "trainer.epochs=1"))
    splits = data.load(spec.dataset).to("cuda")
    members = members_for(spec)
    together = train_population(splits, spec.model, spec.trainer, members, "cuda")
    assert torch.isfinite(together.final).all()
    alone = train_population(splits, spec.model, spec.trainer, [members[-1]], "cuda")
    torch.testing.assert_close(alone.final[0], together.final[-1], rtol=1e-3, atol=1e-3)
