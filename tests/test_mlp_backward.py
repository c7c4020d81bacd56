"""The MLP's hand-written training step (models/mlp_fast.py) computes exactly what autograd computes, in every
configuration."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch

from regbench import models
from regbench.models import mlp_fast
from regbench.models.base import ModelHints
from regbench.models.layers import Context
from regbench.models.mlp import MlpConfig
from regbench.train import denormals, optim
from regbench.train.engine import autograd_step

SEEDS = [0, 1, 2, 0]


def _model(depth: int, input_shape, dropout: float, input_dropout: float):
    hints = ModelHints.plain(len(SEEDS))
    hints.dropout = torch.tensor([0.0, dropout, dropout / 2, dropout])
    hints.input_dropout = torch.tensor([input_dropout, 0.0, input_dropout, 0.0])
    kind = "image" if len(input_shape) > 1 else "sequence"
    return models.build(MlpConfig(width=17, depth=depth), input_shape, kind, 5, SEEDS, hints)


@pytest.mark.parametrize(
    "depth,input_shape,dropout,input_dropout,soft",
    [
        (2, (12,), 0.0, 0.0, False),  # plain
        (2, (12,), 0.4, 0.0, False),  # dropout on some members
        (3, (12,), 0.3, 0.2, True),  # dropout everywhere, soft targets (label smoothing, mixup)
        (1, (2, 3, 4), 0.5, 0.0, False),  # image input, flattened
        (0, (12,), 0.0, 0.3, True),  # no hidden layer: the head alone
    ],
)
def test_hand_written_step_matches_autograd(depth, input_shape, dropout, input_dropout, soft):
    by_hand = _model(depth, input_shape, dropout, input_dropout)
    auto = copy.deepcopy(by_hand)
    step = by_hand.fast_step()
    assert step is not None
    gen = torch.Generator().manual_seed(3)
    k, b = len(SEEDS), 9
    x = torch.randn(k, b, *input_shape, generator=gen)
    if soft:
        y = torch.softmax(torch.randn(k, b, 5, generator=gen) * 2, -1)
    else:
        y = torch.randint(0, 5, (k, b), generator=gen)
    ctx = Context(seeds=torch.tensor(SEEDS), step=11, train=True)
    for p in by_hand.parameters():  # the engine does not clear gradients for it: every one must be overwritten
        p.grad = torch.full_like(p, float("nan"))
    finite = step(x, y, ctx)
    finite_auto = autograd_step(auto, contextlib.nullcontext(), x, y, ctx)
    assert torch.equal(finite, finite_auto) and bool(finite.all())
    for (name, p), q in zip(by_hand.named_parameters(), auto.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7, msg=name)


INF, NAN = float("inf"), float("nan")


# (a -inf hidden weight is cut to 0 by the ReLU after it: the logits stay finite)
@pytest.mark.parametrize(
    "where,member,value",
    [("hidden", 2, INF), ("hidden", 2, NAN), ("head", 0, INF), ("head", 0, -INF), ("head", 3, NAN)],
)
def test_a_member_with_non_finite_logits_is_flagged_and_the_others_are_not(where, member, value):
    model = _model(2, (12,), 0.0, 0.0)
    with torch.no_grad():
        if where == "hidden":
            model.hidden[1].weight[member, 0, 0] = value
        else:
            model.head.bias[member, 0, 3] = value
    x = torch.randn(len(SEEDS), 6, 12).abs()
    y = torch.zeros(len(SEEDS), 6, dtype=torch.int64)
    finite = model.fast_step()(x, y, Context(seeds=torch.tensor(SEEDS), step=0, train=True))
    assert finite.tolist() == [j != member for j in range(len(SEEDS))]


def test_the_step_follows_parameters_moved_after_its_first_call():
    """The step makes its views of the parameters, gradients and buffers once (a plan); parameters moved into the
    optimizer's flat buffer after a first step must not leave it reading the old weights or writing the old
    gradients."""
    model = _model(2, (12,), 0.3, 0.0)
    fresh = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(5)
    x, y = torch.randn(len(SEEDS), 9, 12, generator=gen), torch.randint(0, 5, (len(SEEDS), 9), generator=gen)
    ctx = Context(seeds=torch.tensor(SEEDS), step=3, train=True)
    step, fresh_step = model.fast_step(), fresh.fast_step()
    step(x, y, ctx)  # the plan, on the module's own tensors
    flat = optim.FlatParams(model, step.layers())  # every parameter and gradient moves into one buffer
    with torch.no_grad():  # a change that only the new memory holds
        model.head.weight.mul_(2)
        fresh.head.weight.mul_(2)
    step(x, y, ctx)
    fresh_step(x, y, ctx)
    for (name, p), q in zip(model.named_parameters(), fresh.parameters()):
        assert torch.equal(p.grad, q.grad), name
    assert flat.param.grad.abs().sum() > 0


def test_batch_norm_models_keep_autograd():
    hints = ModelHints.plain(2)
    hints.batch_norm = torch.tensor([True, False])
    assert models.build(MlpConfig(), (12,), "sequence", 5, [0, 1], hints).fast_step() is None


def test_a_members_gradients_do_not_depend_on_its_place_or_its_company(two_threads):
    """Full-size layers (width 100, batch 100) on two threads: every kernel of the step must give a member the same
    bits in any population of two or more, wherever it sits. (torch's softmax over a middle axis did not: with an
    odd K, two threads split a member's columns and rounded the halves differently.)"""
    n, b = 9, 100
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, b, 40, generator=gen), torch.randint(0, 10, (n, b), generator=gen)

    def grads(idx):
        hints = ModelHints.plain(len(idx))
        hints.dropout = torch.tensor([0.3 if i % 2 else 0.0 for i in idx])
        model = models.build(MlpConfig(), (40,), "sequence", 10, idx, hints)
        model.fast_step()(x[idx], y[idx], Context(seeds=torch.tensor(idx), step=5, train=True))
        return {i: [p.grad[pos] for p in model.parameters()] for pos, i in enumerate(idx)}

    everyone = grads(list(range(n)))
    for idx in ([0, 1], [1, 2, 3], [2, 3, 4, 5, 6], [4, 5, 6, 7, 8, 0, 1]):
        for i, g in grads(idx).items():
            assert all(torch.equal(a, c) for a, c in zip(g, everyone[i])), (idx, i)


@pytest.mark.parametrize("soft", [False, True])
def test_flushed_step_raises_tiny_log_probabilities_without_changing_a_gradient_bit(soft):
    """With denormals flushed, the step raises log-probabilities below -87 to -87 before exp (whose vector path
    an input below -87.34 leaves, 30-100x slower); divided by the batch, those probabilities flush to zero either
    way, so every gradient is the same to the bit."""
    floored = _model(2, (12,), 0.3, 0.0)
    with torch.no_grad():
        floored.head.weight.mul_(1000.0)  # confident members: wrong classes far below e^-87
    plain = copy.deepcopy(floored)
    floored_step, plain_step = mlp_fast.TrainStep(floored, flushed=True), mlp_fast.TrainStep(plain, flushed=False)
    gen = torch.Generator().manual_seed(8)
    k, b = len(SEEDS), 9
    x = torch.randn(k, b, 12, generator=gen)
    y = torch.softmax(torch.randn(k, b, 5, generator=gen) * 2, -1) if soft else torch.randint(0, 5, (k, b))
    ctx = Context(seeds=torch.tensor(SEEDS), step=4, train=True)
    with denormals.flushing():
        plain_step(x, y, ctx)
        floored_step(x, y, ctx)
    assert floored_step.plan.floor == -87.0 and plain_step.plan.floor is None
    logits = plain_step.plan.head.out  # [K, C, B], the step's
    assert (torch.log_softmax(logits, 1) < -87.34).any()  # the case the floor is for is there
    for (name, p), q in zip(floored.named_parameters(), plain.parameters()):
        assert torch.equal(p.grad, q.grad), name


@pytest.mark.parametrize("depth,input_shape", [(2, (12,)), (3, (2, 3, 4)), (0, (12,))])
def test_evaluation_forward_gives_the_generic_forwards_bits_with_reused_buffers(depth, input_shape):
    """Under no_grad, a shared [N, ...] input takes the MLP's buffer-reusing evaluation path; it must return what
    the generic forward (taken with gradients on) returns, to the bit, whatever the chunk sizes' order, and logits
    a caller keeps must not change under a later call."""
    model = _model(depth, input_shape, 0.4, 0.2)
    ctx = Context(seeds=torch.tensor(SEEDS), step=0, train=False)
    gen = torch.Generator().manual_seed(2)
    kept = []
    for n in (7, 3, 11, 7):  # shorter, then longer than the buffers made so far
        x = torch.randn(n, *input_shape, generator=gen)
        want = model(x, ctx).detach()
        with torch.no_grad():
            got = model(x, ctx)
        assert torch.equal(got, want)
        kept.append((got, want))
    if depth:
        assert {name for name in model.scratch.bufs if name.startswith("eval")}  # the path was taken
    assert all(torch.equal(got, want) for got, want in kept)


def test_plain_evaluation_takes_the_readable_forward_with_the_same_bits():
    """Context(fast=False) (trainer.fast=false) evaluates through MLP.forward itself: no reused buffers."""
    model = _model(2, (12,), 0.4, 0.2)
    x = torch.randn(7, 12, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        plain = model(x, Context(seeds=torch.tensor(SEEDS), train=False, fast=False))
        assert not model.scratch.bufs
        fast = model(x, Context(seeds=torch.tensor(SEEDS), train=False))
        assert model.scratch.bufs
    assert torch.equal(plain, fast)
