"""Each regularizer's effect, proven on its own: penalties' gradients, masks, transforms and projections."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import scipy.stats
import torch

from regbench import models, regularizers
from regbench.models.base import ModelHints
from regbench.models.layers import Context, MemberBatchNorm, MemberDropout
from regbench.regularizers.base import Batch, Regularizer

SEEDS = [0, 1, 2]


def reg(name: str, *settings: dict | None):
    """The regularizer `name` for len(settings) members; None is a member without it."""
    cls = regularizers.get(name)
    return cls([None if s is None else cls.Config(**s) for s in settings])


def mlp(k: int = 3, hints: ModelHints | None = None, kind="sequence", shape=(40,)):
    from regbench.models.mlp import MlpConfig

    return models.build(MlpConfig(width=16, depth=2), shape, kind, 10, SEEDS[:k], hints or ModelHints.plain(k))


def cnn(k: int = 3):
    from regbench.models.cnn import CnnConfig

    return models.build(CnnConfig(channels=4, depth=2), (40,), "sequence", 10, SEEDS[:k], ModelHints.plain(k))


def ctx(k: int = 3, step: int = 7):
    return Context(seeds=torch.tensor(SEEDS[:k]), step=step, train=True)


# --- penalties: each member's gradient equals the formula, with its own strength ----------------------------------


def penalty_grads(r, model):
    """The gradients the engine adds: the regularizer's closed form (penalty_grad)."""
    r.penalty_grad(model)
    return [w.grad for w in model.weights], [b.grad for b in model.biases]


@pytest.mark.parametrize("name", ["l1", "l2", "elastic_net"])
def test_closed_form_penalty_gradient_equals_autograd_of_the_penalty(name):
    cfgs = [{"strength": 0.1, "biases": False}, None, {"strength": 2.0, "biases": True}]
    if name == "elastic_net":
        cfgs[0]["l1_ratio"], cfgs[2]["l1_ratio"] = 0.3, 0.8
    closed, auto = mlp(), mlp()
    penalty_grads(reg(name, *cfgs), closed)
    Regularizer.penalty_grad(reg(name, *cfgs), auto)  # the default hook: autograd of penalty()
    for a, b in zip(closed.parameters(), auto.parameters()):
        if b.grad is None:
            assert a.grad is None or not a.grad.any()
        else:
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-9)


def test_l1_gradient_is_strength_times_sign():
    model = mlp()
    wg, bg = penalty_grads(reg("l1", None, {"strength": 1e-3}, {"strength": 0.5}), model)
    s = torch.tensor([0.0, 1e-3, 0.5]).view(3, 1, 1)
    for w, g in zip(model.weights, wg):
        torch.testing.assert_close(g, s * w.sign())
    assert all(b is None for b in bg)  # biases are not penalised by default


def test_l2_gradient_is_twice_strength_times_w_and_biases_on_request():
    model = mlp()
    wg, bg = penalty_grads(reg("l2", {"strength": 0.1, "biases": True}, None, {"strength": 2.0, "biases": True}), model)
    s = torch.tensor([0.1, 0.0, 2.0]).view(3, 1, 1)
    for w, g in zip(model.weights, wg):
        torch.testing.assert_close(g, 2 * s * w)
    for b, g in zip(model.biases, bg):
        torch.testing.assert_close(g, 2 * s * b)


@pytest.mark.parametrize("name", ["l1", "l2", "elastic_net"])
def test_bias_and_norm_scope_is_per_member_in_a_mixed_population(name):
    """A batched sweep over `biases=true,false` puts both settings in one population: each member gets its own."""
    model = mlp()
    r = reg(name, {"strength": 0.1, "biases": False}, None, {"strength": 0.1, "biases": True})
    _, bg = penalty_grads(r, model)
    assert len(bg) == len(model.biases) == 3
    for g in bg:
        assert torch.equal(g[0], torch.zeros_like(g[0]))  # member 0 asked for weights only
        assert not torch.equal(g[2], torch.zeros_like(g[2]))  # member 2 asked for biases too


def test_decoupled_decay_scope_is_per_member_in_a_mixed_population():
    model = mlp(k=2)
    biases = [b.detach().clone() for b in model.biases]
    reg("weight_decay", {"strength": 0.5, "biases": False}, {"strength": 0.5, "biases": True}).post_step(model, 0.1)
    for b, old in zip(model.biases, biases):
        assert torch.equal(b.detach()[0], old[0])
        torch.testing.assert_close(b.detach()[1], old[1] * (1 - 0.1 * 0.5))


def test_elastic_net_gradient_and_its_two_ends():
    model = mlp()
    r = reg("elastic_net", {"strength": 0.2, "l1_ratio": 0.25}, {"strength": 1.0, "l1_ratio": 0.0}, None)
    wg, _ = penalty_grads(r, model)
    s, ratio = torch.tensor([0.2, 1.0, 0.0]).view(3, 1, 1), torch.tensor([0.25, 0.0, 0.0]).view(3, 1, 1)
    for w, g in zip(model.weights, wg):
        torch.testing.assert_close(g, s * (ratio * w.sign() + 2 * (1 - ratio) * w))
    both = {"strength": 0.3}
    with torch.no_grad():
        torch.testing.assert_close(
            reg("elastic_net", {**both, "l1_ratio": 1.0}).penalty(mlp(1)), reg("l1", both).penalty(mlp(1))
        )
        torch.testing.assert_close(
            reg("elastic_net", {**both, "l1_ratio": 0.0}).penalty(mlp(1)), reg("l2", both).penalty(mlp(1))
        )


def test_penalties_add_up_when_combined():
    """l1 + elastic_net and l2 + elastic_net are additive by design (documented), not refused."""
    from regbench.train.engine import build_regularizers
    from regbench.train.population import Member

    cfgs = {n: regularizers.get(n).Config() for n in ("l1", "l2", "elastic_net")}
    (m,) = [Member("x", 0, cfgs)]
    regs = build_regularizers([m], "cpu")
    model = mlp(1)
    with torch.no_grad():
        total = sum(r.penalty(model) for r in regs)
        by_hand = sum(
            1e-4 * w.abs().sum() + 1e-4 * w.square().sum() + 1e-4 * (0.5 * w.abs().sum() + 0.5 * w.square().sum())
            for w in model.weights
        )
    torch.testing.assert_close(total, by_hand.view(1))


# --- dropout and batch norm -------------------------------------------------------------------------------------


def test_dropout_keeps_the_expected_fraction_rescaled_and_is_identity_at_eval():
    p = torch.tensor([0.0, 0.3, 0.6])
    drop = MemberDropout(p, "dropout.test")
    x = torch.ones(3, 200, 500)
    out = drop(x, ctx())
    kept = (out != 0).float().mean(dim=(1, 2))
    torch.testing.assert_close(kept, 1 - p, atol=0.005, rtol=0)
    for k in range(3):
        torch.testing.assert_close(out[k][out[k] != 0], torch.full_like(out[k][out[k] != 0], 1 / (1 - p[k].item())))
    assert torch.equal(out[0], x[0])  # p = 0: untouched
    assert not torch.equal(out[1], out[2] != 0)  # independent masks per member
    assert torch.equal(drop(x, Context(seeds=torch.tensor(SEEDS), train=False)), x)


def test_dropout_masks_drawn_ahead_equal_each_steps_own_draw():
    # masks come from a pass over several steps at once; walking steps forwards, back (a resume) and far ahead,
    # each must equal that step drawn alone (the device-counter path draws exactly one step)
    p = torch.tensor([0.0, 0.3, 0.3, 0.6])
    seeds = torch.tensor([1, 1, 2, 1])  # two dropping members share a seed: hashed once, copied
    drop = MemberDropout(p, "dropout.ahead")
    alone = MemberDropout(p, "dropout.ahead")
    for step in [*range(0, 20), 5, 6, 250, 251, 255, 256, 257, 10_000]:
        got = drop.draw((4, 30, 20), Context(seeds=seeds, step=step, train=True)).clone()
        want = alone.draw((4, 30, 20), Context(seeds=seeds, step=torch.tensor(step), train=True))
        assert torch.equal(got, want), step
    assert drop._masks[3].shape[0] > 1  # it did draw ahead


def test_batch_norm_regularizer_switches_it_on_per_member():
    hints = ModelHints.plain(3)
    reg("batch_norm", None, {}, {}).hints(hints)
    assert hints.batch_norm.tolist() == [False, True, True]
    assert len(mlp(3, hints).bns) == 2


def test_the_bias_before_batch_norm_gets_no_gradient_only_for_members_with_it():
    hints = ModelHints.plain(3)
    reg("batch_norm", None, {}, {}).hints(hints)
    model = mlp(3, hints)
    model(torch.randn(3, 32, 40), ctx()).sum().backward()
    g = model.hidden[0].bias.grad  # [K, 1, width]
    assert g[0].abs().sum() > 0 and torch.equal(g[1:], torch.zeros_like(g[1:]))


def test_batch_norm_uses_batch_statistics_in_training_and_running_ones_at_eval_per_member():
    bn = MemberBatchNorm(torch.tensor([False, True, True]), channels=5)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 256, 5, generator=gen) * torch.tensor([1.0, 2.0, 5.0]).view(3, 1, 1) + torch.tensor(
        [0.0, 3.0, -1.0]
    ).view(3, 1, 1)
    out = bn(x, ctx())
    assert torch.equal(out[0], x[0])  # off for member 0
    for k in (1, 2):  # batch statistics: each member's output is standardised per feature
        torch.testing.assert_close(out[k].mean(0), torch.zeros(5), atol=1e-5, rtol=0)
        torch.testing.assert_close(out[k].var(0, unbiased=False), torch.ones(5), atol=1e-3, rtol=0)
    rm, rv = bn.running_mean.view(3, 5), bn.running_var.view(3, 5)
    for k in (1, 2):  # running statistics moved 10% of the way to each member's own batch statistics
        torch.testing.assert_close(rm[k], 0.1 * x[k].mean(0))
        torch.testing.assert_close(rv[k], 0.9 + 0.1 * x[k].var(0, unbiased=True))
    y = torch.randn(3, 8, 5, generator=gen)
    ev = bn(y, Context(seeds=torch.tensor(SEEDS), train=False))
    for k in (1, 2):  # evaluation: running statistics, not the batch's
        torch.testing.assert_close(ev[k], (y[k] - rm[k]) / torch.sqrt(rv[k] + 1e-5))
    assert torch.equal(ev[0], y[0])


# --- transforms: augmentation, noise, cutout, mixup, label smoothing ---------------------------------------------


def seq_batch(k=3, b=64, n=40):
    x = torch.randn(k, b, n, generator=torch.Generator().manual_seed(1))
    return Batch(x, torch.randint(0, 10, (k, b), generator=torch.Generator().manual_seed(2)), 10, "sequence")


def test_augment_sequences_scale_then_roll_then_jitter_as_defined():
    r = reg("augment", None, {"strength": 1.0}, {"strength": 2.0})
    batch = seq_batch()
    out = r.transform(batch, ctx()).x
    assert torch.equal(out[0], batch.x[0])  # off: untouched
    d = r.draw(ctx().seeds, 7, tuple(batch.x.shape), "sequence")
    x = batch.x.numpy()
    for k in (1, 2):
        s = [0.0, 1.0, 2.0][k]
        assert d["shift"][k].abs().max().item() <= round(0.25 * s * 40)
        assert d["shift"][k].unique().numel() > 5  # shifts actually vary
        assert ((d["scale"][k] - 1).abs() <= 0.2 * s + 1e-6).all()
        torch.testing.assert_close(d["noise"][k].std(), torch.tensor(0.1 * s), rtol=0.05, atol=0)
        for i in range(batch.x.shape[1]):
            ref = np.roll(x[k, i] * d["scale"][k, i].item(), d["shift"][k, i].item()) + d["noise"][k, i].numpy()
            np.testing.assert_allclose(out[k, i].numpy(), ref, rtol=1e-5, atol=1e-6)


def test_augment_images_crop_of_the_padded_image_then_flip():
    r = reg("augment", None, {"strength": 2.0}, {"strength": 2.0, "flip": False})
    x = torch.randn(3, 32, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    out = r.transform(Batch(x, torch.zeros(3, 32, dtype=torch.long), 10, "image"), ctx()).x
    assert torch.equal(out[0], x[0])
    d = r.draw(ctx().seeds, 7, tuple(x.shape), "image")
    p = 2  # round(2.0 * 8 / 8)
    assert d["dy"][1:].abs().max() <= p and d["dx"][1:].abs().max() <= p
    assert 0 < d["flip"][1].float().mean() < 1 and not d["flip"][2].any()
    for k in (1, 2):
        for i in range(32):
            padded = np.pad(x[k, i].numpy(), ((0, 0), (p, p), (p, p)))
            dy, dx = d["dy"][k, i].item(), d["dx"][k, i].item()
            ref = padded[:, p + dy : p + dy + 8, p + dx : p + dx + 8]
            ref = ref[..., ::-1] if d["flip"][k, i] else ref
            np.testing.assert_array_equal(out[k, i].numpy(), ref)


def test_augment_tables_add_gaussian_noise_scaled_by_strength():
    r = reg("augment", None, {"strength": 1.0}, {"strength": 3.0})
    x = torch.zeros(3, 500, 20)
    out = r.transform(Batch(x, torch.zeros(3, 500, dtype=torch.long), 10, "table"), ctx()).x
    assert torch.equal(out[0], x[0])
    torch.testing.assert_close(out[1:].std(dim=(1, 2)), torch.tensor([0.1, 0.3]), rtol=0.05, atol=0)


def test_gaussian_noise_has_each_members_std_and_new_noise_each_step():
    r = reg("gaussian_noise", {"std": 0.5}, None, {"std": 2.0})
    batch = seq_batch(b=500)
    a, b = r.transform(batch, ctx(step=1)).x, r.transform(batch, ctx(step=2)).x
    assert torch.equal(a[1], batch.x[1])
    torch.testing.assert_close((a - batch.x)[[0, 2]].std(dim=(1, 2)), torch.tensor([0.5, 2.0]), rtol=0.03, atol=0)
    assert not torch.equal(a[0], b[0])


def test_transforms_run_only_on_training_batches(compose_cfg, monkeypatch):
    """The engine calls transforms in the step loop only: evaluation never sees augmented or noised data."""
    from regbench import data
    from regbench.config import validate_config
    from regbench.train.engine import train_population
    from regbench.train.population import members_for

    from .conftest import TINY

    calls = []
    for name in ("augment", "gaussian_noise", "cutout", "mixup", "label_smoothing"):
        cls = regularizers.get(name)
        original = cls.transform

        def spy(self, batch, c, original=original, name=name):
            calls.append((name, c.train))
            return original(self, batch, c)

        monkeypatch.setattr(cls, "transform", spy)
    spec = validate_config(compose_cfg(*TINY, "regularizers=[augment,gaussian_noise,cutout,mixup,label_smoothing]"))
    pop = train_population(data.load(spec.dataset), spec.model, spec.trainer, members_for(spec), "cpu")
    assert len(calls) == 5 * pop.steps and all(train for _, train in calls)


def test_cutout_masks_one_window_of_the_given_length_per_sequence():
    r = reg("cutout", {"size": 0.25}, None, {"size": 0.5})
    batch = Batch(torch.ones(3, 200, 40), torch.zeros(3, 200, dtype=torch.long), 10, "sequence")
    out = r.transform(batch, ctx()).x
    assert torch.equal(out[1], batch.x[1])
    for k, length in ((0, 10), (2, 20)):
        zero = out[k] == 0
        assert (zero.sum(1) == length).all()
        first = zero.float().argmax(1)
        span = torch.arange(40).view(1, -1)
        assert torch.equal(zero, (span >= first.view(-1, 1)) & (span < first.view(-1, 1) + length))
        assert first.unique().numel() > 5


def test_cutout_masks_a_square_in_images_and_refuses_tables():
    from regbench.errors import UsageError

    r = reg("cutout", {"size": 0.5})
    x = torch.ones(1, 300, 1, 8, 8)
    out = r.transform(Batch(x, torch.zeros(1, 300, dtype=torch.long), 10, "image"), ctx(1)).x[0, :, 0]
    zero = out == 0
    rows, cols = zero.any(2), zero.any(1)
    # a square of side 4, clipped where its centre lies near a border: always a full rectangle, at most 4 x 4
    assert torch.equal(zero.sum((1, 2)), rows.sum(1) * cols.sum(1))
    assert rows.sum(1).max() == 4 and cols.sum(1).max() == 4 and (zero.sum((1, 2)) == 16).float().mean() > 0.2
    with pytest.raises(UsageError, match="regularizers.cutout: needs sequence or image data, got table data"):
        r.transform(Batch(torch.ones(1, 4, 3), torch.zeros(1, 4, dtype=torch.long), 10, "table"), ctx(1))


@pytest.mark.parametrize("alpha", [0.4, 2.0])
def test_mixup_weights_follow_beta_alpha_alpha(alpha):
    r = reg("mixup", {"alpha": alpha}, None)
    lam, perm = r.draw(ctx(2).seeds, 3, 20000)
    sample = lam[0].double()
    torch.testing.assert_close(sample.mean().item(), 0.5, atol=0.01, rtol=0)
    torch.testing.assert_close(sample.var().item(), 1 / (4 * (2 * alpha + 1)), rtol=0.05, atol=0)
    assert scipy.stats.kstest(sample.numpy(), "beta", args=(alpha, alpha)).pvalue > 1e-3
    assert torch.equal(lam[1], torch.ones(20000))  # off: no mixing
    assert torch.equal(perm.sort(1).values, torch.arange(20000).expand(2, -1))  # a permutation per member


def test_mixup_mixes_each_example_with_its_partner_inputs_and_targets_alike():
    r = reg("mixup", {"alpha": 1.0}, None, {"alpha": 0.2})
    batch = seq_batch(b=16)
    out = r.transform(batch, ctx())
    lam, perm = r.draw(ctx().seeds, 7, 16)
    onehot = torch.nn.functional.one_hot(batch.y, 10).float()
    for k in (0, 2):
        lk = lam[k].view(-1, 1)
        torch.testing.assert_close(out.x[k], lk * batch.x[k] + (1 - lk) * batch.x[k][perm[k]])
        torch.testing.assert_close(out.y[k], lk * onehot[k] + (1 - lk) * onehot[k][perm[k]])
    assert torch.equal(out.x[1], batch.x[1]) and torch.equal(out.y[1], onehot[1])


def test_label_smoothing_gives_the_expected_target_distribution():
    r = reg("label_smoothing", {"epsilon": 0.1}, None, {"epsilon": 0.5})
    batch = seq_batch(b=8)
    y = r.transform(batch, ctx()).y
    onehot = torch.nn.functional.one_hot(batch.y, 10).float()
    torch.testing.assert_close(y[0], 0.9 * onehot[0] + 0.01)
    torch.testing.assert_close(y[2], 0.5 * onehot[2] + 0.05)
    assert torch.equal(y[1], onehot[1])
    torch.testing.assert_close(y.sum(-1), torch.ones(3, 8))


# --- post-step: max-norm and decoupled weight decay ---------------------------------------------------------------


@pytest.mark.parametrize("make", [mlp, cnn])
def test_max_norm_bounds_every_units_incoming_weights(make):
    model = make()
    with torch.no_grad():
        for w in model.weights:
            w.mul_(torch.rand(w.shape, generator=torch.Generator().manual_seed(4)) * 20)
    before = [model.weight_rows(w).norm(dim=2).clone() for w in model.weights]
    reg("max_norm", {"c": 1.0}, None, {"c": 2.5}).post_step(model, lr=0.1)
    for w, old in zip(model.weights, before):
        norms = model.weight_rows(w).norm(dim=2)
        assert (norms[0] <= 1.0 + 1e-5).all() and (norms[2] <= 2.5 + 1e-5).all()
        torch.testing.assert_close(norms[1], old[1], rtol=0, atol=0)  # off: untouched
        small = old[2] < 2.5  # rows already inside the ball keep their norm
        torch.testing.assert_close(norms[2][small], old[2][small])
        torch.testing.assert_close(norms[2][~small], torch.full_like(norms[2][~small], 2.5))


def test_decoupled_weight_decay_shrinks_weights_by_lr_times_wd_whatever_the_gradient():
    model = mlp()
    for w in model.weights:  # a gradient in place changes nothing: the decay never reads it
        w.grad = torch.randn_like(w)
    before = [w.detach().clone() for w in model.weights]
    biases = [b.detach().clone() for b in model.biases]
    reg("weight_decay", {"strength": 0.5}, None, {"strength": 0.01}).post_step(model, lr=0.1)
    factor = torch.tensor([1 - 0.1 * 0.5, 1.0, 1 - 0.1 * 0.01]).view(3, 1, 1)
    for w, old in zip(model.weights, before):
        torch.testing.assert_close(w.detach(), old * factor)
        assert torch.equal(w.detach()[1], old[1])  # the member without decay is not touched at all
    for b, old in zip(model.biases, biases):
        assert torch.equal(b.detach(), old)


def test_decoupled_decay_follows_a_changed_learning_rate():
    """The factors are kept between steps; a new learning rate must give new ones."""
    model = mlp(k=1)
    before = [w.detach().clone() for w in model.weights]
    r = reg("weight_decay", {"strength": 0.5})
    r.post_step(model, lr=0.1)
    r.post_step(model, lr=0.2)
    for w, old in zip(model.weights, before):
        torch.testing.assert_close(w.detach(), old * (1 - 0.1 * 0.5) * (1 - 0.2 * 0.5))


def test_decoupled_decay_differs_from_coupled_l2_under_adam(compose_cfg):
    """Under Adam, l2's gradient is rescaled per weight; decoupled decay is not, so they train differently."""
    from regbench import data
    from regbench.config import validate_config
    from regbench.regularizers.l2 import L2Config
    from regbench.regularizers.weight_decay import WeightDecayConfig
    from regbench.train.engine import train_population
    from regbench.train.population import Member

    from .conftest import TINY

    spec = validate_config(compose_cfg(*TINY))
    members = [
        Member("baseline", 0),
        Member("l2", 0, {"l2": L2Config(strength=0.05)}),  # gradient 2 * 0.05 * w: "wd" 0.1 in SGD terms
        Member("weight_decay", 0, {"weight_decay": WeightDecayConfig(strength=0.1)}),
    ]
    final = train_population(data.load(spec.dataset), spec.model, spec.trainer, members, "cpu").final
    assert not torch.allclose(final[1], final[2], atol=1e-3) and not torch.allclose(final[0], final[2], atol=1e-3)


@pytest.mark.parametrize("name", ["l1", "l2", "elastic_net"])
def test_a_penalty_gradient_for_some_parameters_reaches_those_only(name):
    """The engine asks for one layer's penalty gradient at a time (as soon as the layer's own are complete)."""
    cfg = {"strength": 0.1, "biases": True} | ({"l1_ratio": 0.3} if name == "elastic_net" else {})
    r = reg(name, cfg, None, cfg)
    model, whole = mlp(), mlp()
    assert type(r).layerwise() and type(r).has_penalty()
    for p in [*model.parameters(), *whole.parameters()]:
        p.grad = torch.zeros_like(p)
    layer = [model.weights[1], model.biases[1]]
    r.penalty_grad(model, layer)
    r.penalty_grad(whole)
    for p, q in zip(model.parameters(), whole.parameters()):
        if any(p is x for x in layer):
            assert torch.equal(p.grad, q.grad) and bool(p.grad.abs().sum() > 0)
        else:
            assert bool((p.grad == 0).all())


def test_only_a_penalty_through_autograd_keeps_the_engine_from_updating_layer_by_layer():
    class Auto(Regularizer):
        def penalty(self, model):
            return None

    assert regularizers.get("dropout").layerwise() and not regularizers.get("dropout").has_penalty()
    assert not Auto.layerwise() and Auto.has_penalty()


# --- the step's hooks and the declarations the engine and the sweep follow ----------------------------------------


class Recorder(Regularizer):
    """Records the step hooks' order; the tests register it as `recorder`."""

    name = "recorder"
    calls: ClassVar[list[str]] = []

    @dataclass
    class Config:
        pass

    def transform(self, batch, ctx):
        self.calls.append("transform")
        return batch

    def before_step(self, model, ctx):
        self.calls.append("before_step")

    def after_backward(self, model, ctx):
        self.calls.append("after_backward")

    def penalty(self, model):
        self.calls.append("penalty")
        return None

    def post_step(self, model, lr):
        self.calls.append("post_step")


def _train_with(compose_cfg, monkeypatch, cls, *overrides, steps=3):
    from regbench import data
    from regbench.config import validate_config
    from regbench.train.engine import train_population
    from regbench.train.population import Member

    from .conftest import TINY

    monkeypatch.setitem(regularizers.REGULARIZERS, cls.name, cls)
    spec = validate_config(compose_cfg(*TINY, "regularizers=[]", f"trainer.steps={steps}", *overrides))
    members = [Member("baseline", 0), Member(cls.name, 1, {cls.name: cls.Config()})]
    return train_population(data.load(spec.dataset), spec.model, spec.trainer, members, "cpu")


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_step_hooks_run_in_their_documented_order(compose_cfg, monkeypatch, model):
    Recorder.calls = []
    _train_with(compose_cfg, monkeypatch, Recorder, f"model={model}")
    step = ["transform", "before_step", "after_backward", "penalty", "post_step"]
    assert Recorder.calls == step * 3


def test_after_backward_turns_layer_by_layer_updates_off(compose_cfg, monkeypatch):
    """The hand-written MLP step updates each layer inside its backward pass, before after_backward could run: a
    regularizer with the hook must see the engine step the whole model after it."""
    from regbench.train import optim

    class Restores(Regularizer):
        name = "restores"
        Config = Recorder.Config

        def after_backward(self, model, ctx):
            return None

    assert regularizers.get("l2").layerwise() and not Restores.layerwise()
    calls = []
    real = optim.Optimizer.step_group
    monkeypatch.setattr(optim.Optimizer, "step_group", lambda self, i: calls.append(i) or real(self, i))
    _train_with(compose_cfg, monkeypatch, Restores)
    assert not calls


def test_needs_autograd_puts_the_population_on_autograds_step_and_its_members_last(compose_cfg, monkeypatch):
    from regbench import sweep
    from regbench.models.mlp import MLP
    from regbench.train.population import Member

    assert regularizers.get("batch_norm").needs_autograd()
    assert not any(cls.needs_autograd() for name, cls in regularizers.REGULARIZERS.items() if name != "batch_norm")

    class Auto(Regularizer):
        name = "auto"
        Config = Recorder.Config

        @classmethod
        def needs_autograd(cls):
            return True

    def by_hand(*args, **kwargs):
        raise AssertionError("the hand-written step was asked for")

    monkeypatch.setattr(MLP, "fast_step", by_hand)
    _train_with(compose_cfg, monkeypatch, Auto)  # the MLP's own step would raise
    members = [Member("auto", 0, {"auto": Auto.Config()}), Member("baseline", 0), Member("l2", 0, {"l2": None})]
    ordered, wanted, plain = sweep.apart(members, [[0, 1], [1, 2]], sweep.needs_autograd)
    assert [m.arm for m in ordered] == ["baseline", "l2", "auto"] and plain == 2 and wanted == [[2, 0], [0, 1]]


def test_singles_cells_come_from_each_regularizers_declared_levels():
    cells = regularizers.singles_cells()
    assert cells["l2_weak"] == ("l2", {"strength": 1e-5}) and cells["batch_norm"] == ("batch_norm", {})
    for name, cls in regularizers.REGULARIZERS.items():
        for level, values in cls.singles.items():
            assert cells[f"{name}_{level}" if level else name] == (name, values)
            cls.Config(**values)  # every declared value is a field of the regularizer's config
