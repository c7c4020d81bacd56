"""trainer.fast=false, the plain path (autograd, torch.optim, no hand-written step): it trains the same members as
the fast path within float tolerance, uses none of the fast path's machinery, and is where training falls back to
when a private torch operation the fast path needs is missing (torch_private.py)."""

from __future__ import annotations

import logging

import pytest
import torch

from regbench import data, torch_private
from regbench.config import validate_config
from regbench.models import mlp_fast
from regbench.train import checkpoint, optim
from regbench.train.engine import train_population
from regbench.train.population import members_for

from .conftest import TINY, Interrupt, StopAt

STEPS = ["trainer.steps=36", "trainer.epochs=100"]  # 9 epochs of 4 steps, an evaluation after each


def _train(compose_cfg, *overrides):
    spec = validate_config(compose_cfg(*TINY, *STEPS, *overrides))
    return train_population(data.load(spec.dataset), spec.model, spec.trainer, members_for(spec), "cpu")


def _refuse_fast_path(monkeypatch) -> None:
    """Every piece of the fast path fails if used: the hand-written step, the buffer-reusing evaluation, the flat
    fused optimizer."""

    def refuse(*args, **kwargs):
        raise AssertionError("the fast path ran")

    monkeypatch.setattr(mlp_fast.TrainStep, "__call__", refuse)
    monkeypatch.setattr(mlp_fast, "evaluate", refuse)
    monkeypatch.setattr(optim, "FlatParams", refuse)


@pytest.mark.parametrize(
    "model,regs",
    [
        ("mlp", "l2,dropout"),  # fast: the hand-written step, closed-form penalty gradients, Adam a layer at a time
        ("mlp", "l1,batch_norm"),  # fast: autograd, closed-form penalty gradients, the flat optimizer
        ("cnn", "l2,dropout"),
        ("mlp", "early_stopping,label_smoothing,max_norm,weight_decay,elastic_net"),  # every other hook
    ],
)
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_plain_and_fast_paths_train_the_same_members(compose_cfg, monkeypatch, model, regs, optimizer):
    setup = [f"model={model}", f"regularizers=[{regs}]", f"trainer.optimizer={optimizer}"]
    fast = _train(compose_cfg, *setup)
    with monkeypatch.context() as m:
        _refuse_fast_path(m)
        plain = _train(compose_cfg, *setup, "trainer.fast=false")
    assert plain.steps == fast.steps == 36 and len(plain.history) == len(fast.history)
    # different summation orders (penalties in the loss or added in closed form) and fused Adam's FMA: a few ulps.
    # Except L1 under Adam: weights that L1 holds near zero flip the sign of their penalty gradient from step to step,
    # and Adam's normalisation turns each ulp that decides a flip into an lr-sized step: over 36 steps the paths
    # part by ~1e-4 relative (seen with batch norm on this CPU; a wrong gradient would move the losses by far more)
    chaotic = optimizer == "adam" and "l1" in regs.split(",")
    torch.testing.assert_close(plain.final, fast.final, rtol=2e-3 if chaotic else 1e-5, atol=1e-6)


def test_the_fast_path_is_the_default_and_uses_its_machinery(compose_cfg, monkeypatch):
    _refuse_fast_path(monkeypatch)
    with pytest.raises(AssertionError, match="the fast path ran"):
        _train(compose_cfg, "regularizers=[l2,dropout]")


@pytest.fixture
def probe_again(monkeypatch):
    """The private operations probed afresh, and their warning not yet given (both restored afterwards)."""
    monkeypatch.setattr(torch_private, "_missing", None)
    monkeypatch.setattr(torch_private, "_warned", False)


@pytest.mark.parametrize(
    "owner,name",
    [(torch, "_fused_adam_"), (torch.ops.aten, "_log_softmax"), (torch.ops.aten, "threshold_backward")],
)
def test_a_missing_private_op_makes_training_take_the_plain_path_with_one_warning(
    compose_cfg, monkeypatch, caplog, probe_again, owner, name
):
    plain = _train(compose_cfg, "regularizers=[l2,dropout]", "trainer.fast=false")
    monkeypatch.setattr(owner, name, None)  # as in a torch without it
    with caplog.at_level(logging.WARNING, "regbench"):
        with monkeypatch.context() as m:
            _refuse_fast_path(m)
            first = _train(compose_cfg, "regularizers=[l2,dropout]")
        second = _train(compose_cfg, "regularizers=[l2,dropout]")
    warnings = [r for r in caplog.records if "private operations" in r.getMessage()]
    assert len(warnings) == 1 and "trainer.fast=false" in warnings[0].getMessage()
    for got in (first, second):  # the plain path's numbers, to the bit
        assert torch.equal(got.final, plain.final)


def test_the_private_ops_are_all_there_in_the_torch_tested_on(probe_again):
    assert torch_private.missing() == [] and torch_private.usable()


def test_a_plain_run_resumes_from_its_checkpoint_exactly(compose_cfg, tmp_path):
    """torch.optim's own state (per-parameter Adam moments) goes into the checkpoint and comes back."""
    spec = validate_config(compose_cfg(*TINY, "trainer.epochs=4", "regularizers=[l2,dropout]", "trainer.fast=false"))
    splits, members = data.load(spec.dataset), members_for(spec)
    whole = train_population(splits, spec.model, spec.trainer, members, "cpu")
    ck = checkpoint.Checkpointing(tmp_path / "checkpoint.pt", every=1, key="run")
    with pytest.raises(Interrupt):
        train_population(splits, spec.model, spec.trainer, members, "cpu", StopAt(3), ck)
    saved = torch.load(ck.path, weights_only=True)
    assert saved["epoch"] == 2 and len(saved["optimizer"]["state"]) > 1  # a state per parameter: torch's Adam
    resumed = train_population(splits, spec.model, spec.trainer, members, "cpu", None, ck)
    assert resumed.history == whole.history and torch.equal(resumed.final, whole.final)
