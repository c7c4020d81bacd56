"""The member-batched engine: members are independent, paired by seed, and equal to themselves trained alone."""

from __future__ import annotations

import pytest
import torch

from regbench import data, models
from regbench.config import validate_config
from regbench.models.base import ModelHints
from regbench.train.engine import Schedule, train_population
from regbench.train.evaluate import COLUMNS, evaluate
from regbench.train.population import members_for

from .conftest import TINY, assert_trained_alone_equals_together


def _spec(compose_cfg, *overrides):
    return validate_config(compose_cfg(*TINY, *overrides))


@pytest.mark.parametrize(
    "model,regs",
    [
        ("mlp", "l2,dropout"),
        ("cnn", "l2,dropout"),
        ("mlp", "augment,gaussian_noise,mixup"),
        ("cnn", "cutout,augment,batch_norm"),
        ("mlp", "early_stopping,label_smoothing,max_norm,weight_decay,elastic_net,batch_norm"),
    ],
)
def test_member_in_population_matches_member_trained_alone(compose_cfg, model, regs, two_threads):
    # dropout, augmentation, noise, cutout and mixup draw random numbers, so this also checks that randomness
    # follows the member's seed, not its position
    spec = _spec(
        compose_cfg,
        f"model={model}",
        "trainer.seeds=3",
        f"regularizers=[{regs}]",
        *(["trainer.epochs=4", "regularizers.early_stopping.patience=1"] if "early_stopping" in regs else []),
    )
    splits = data.load(spec.dataset)
    members = members_for(spec)  # 3 baseline + 3 regularized
    together = train_population(splits, spec.model, spec.trainer, members, "cpu")
    for j in (1, 4):  # a baseline member and a regularized member, each from the middle of the population
        # The MLP's batched matmuls and element-wise optimizer give bit-identical members for any population of two or
        # more (tiny differences grow over a long run, so exactness is what keeps a sweep job equal to a solo run);
        # a population of one may differ in the last bit (the BLAS threads a lone product differently), and grouped
        # convolutions and batch norm's per-channel statistics may round one ulp differently with K.
        exact = model == "mlp" and "batch_norm" not in regs
        for subset in ([j], [j, 5 - j], [0, 1, 2, 3, 4]):  # alone, a pair, an odd population
            pop = train_population(splits, spec.model, spec.trainer, [members[i] for i in subset], "cpu")
            tol = 0 if exact and len(subset) > 1 else 1e-4
            torch.testing.assert_close(pop.final[subset.index(j)], together.final[j], rtol=tol, atol=tol)


def test_paired_members_share_initial_weights_and_minibatches(compose_cfg):
    spec = _spec(compose_cfg, "regularizers=[dropout]")
    members = members_for(spec)  # seeds 0, 1 (baseline) then 0, 1 (dropout)
    seeds = [m.seed for m in members]
    model = models.build(spec.model, (40,), "sequence", 10, seeds, ModelHints.plain(len(members)))
    w = model.weights[0]
    torch.testing.assert_close(w[0], w[2], rtol=0, atol=0)  # seed 0, both arms
    assert not torch.equal(w[0], w[1])  # different seeds differ
    order = Schedule(seeds, 500, 50, "cpu").epoch()  # [steps, K, B]
    assert order.shape == (10, 4, 50) and order[3].is_contiguous()
    assert torch.equal(order[:, 0], order[:, 2]) and not torch.equal(order[:, 0], order[:, 1])


def test_train_metrics_are_eval_mode_on_the_full_training_split(compose_cfg):
    spec = _spec(compose_cfg, "regularizers=[dropout]", "regularizers.dropout.p=0.5")
    splits = data.load(spec.dataset)
    members = members_for(spec)
    k = len(members)
    hints = ModelHints.plain(k)
    hints.dropout = torch.full((k,), 0.5)
    model = models.build(spec.model, splits.input_shape, splits.kind, 10, [m.seed for m in members], hints)
    seeds = torch.tensor([m.seed for m in members])
    metrics = evaluate(model, splits, seeds)
    assert torch.equal(metrics, evaluate(model, splits, seeds))  # no dropout at evaluation: deterministic
    with torch.no_grad():  # the same numbers by hand, member 0, without the dropout layers at all
        h = splits.x_train
        for lin in model.hidden:
            h = (h @ lin.weight[0].T + lin.bias[0]).relu()
        logits = h @ model.head.weight[0].T + model.head.bias[0]
        acc = (logits.argmax(1) == splits.y_train).float().mean()
        loss = torch.nn.functional.cross_entropy(logits, splits.y_train)
    torch.testing.assert_close(metrics[0, COLUMNS.index("train_acc")], acc)
    torch.testing.assert_close(metrics[0, COLUMNS.index("train_loss")], loss, rtol=1e-5, atol=1e-6)


def test_validation_is_held_out_of_the_training_data(compose_cfg):
    spec = _spec(compose_cfg)
    splits = data.load(spec.dataset)
    sizes = splits.sizes()
    assert sizes["val"] == round(480 * 0.1) and sizes["train"] + sizes["val"] == 480
    train_rows = {tuple(r) for r in splits.x_train.tolist()}
    assert not any(tuple(r) in train_rows for r in splits.x_val.tolist())


def test_baseline_overfits_mnist1d(compose_cfg):
    """The default problem must show the gap regularizers are meant to close."""
    spec = _spec(compose_cfg, "dataset.num_samples=5000", "trainer.epochs=30", "trainer.seeds=1", "regularizers=[]")
    pop = train_population(data.load(spec.dataset), spec.model, spec.trainer, members_for(spec), "cpu")
    final = dict(zip(COLUMNS, pop.final[0].tolist()))
    assert final["train_acc"] >= 0.95
    assert final["train_acc"] - final["val_acc"] > 0.15


def test_batch_larger_than_training_split_is_refused(compose_cfg):
    from regbench.errors import UsageError

    spec = _spec(compose_cfg, "trainer.batch_size=10000")
    with pytest.raises(UsageError, match=r"trainer.batch_size=10000: larger than the training split \(432\)"):
        train_population(data.load(spec.dataset), spec.model, spec.trainer, members_for(spec), "cpu")


def test_a_frozen_member_stops_updating_while_the_others_train_on(compose_cfg, monkeypatch):
    """The mechanism behind early stopping: a hook freezes member 1 after epoch 1; its weights stay put."""
    from dataclasses import dataclass

    from regbench import regularizers
    from regbench.regularizers.base import Regularizer
    from regbench.train.population import Member

    seen = {}

    @dataclass
    class FreezeCfg:
        pass

    class FreezeAfterFirstEval(Regularizer):
        name, Config = "freeze_test", FreezeCfg

        def on_eval(self, model, epoch, metrics):
            seen.setdefault(epoch, model.weights[0].detach().clone())
            return self.active

    monkeypatch.setitem(regularizers.REGULARIZERS, "freeze_test", FreezeAfterFirstEval)
    spec = _spec(compose_cfg, "trainer.epochs=3")
    members = [Member("baseline", 0), Member("frozen", 0, {"freeze_test": FreezeCfg()})]
    seen.clear()
    pop = train_population(data.load(spec.dataset), spec.model, spec.trainer, members, "cpu")
    assert pop.frozen_at == [None, 1]
    after_first, after_last = seen[1], seen[3]
    torch.testing.assert_close(after_last[1], after_first[1], rtol=0, atol=0)  # frozen: unchanged
    assert not torch.equal(after_last[0], after_first[0])  # the baseline kept training


@pytest.mark.parametrize(
    "knob", ["trainer.precision=bf16", pytest.param("trainer.compile=true", marks=pytest.mark.slow)]
)
def test_bf16_and_compile_train_the_same_members_to_nearby_numbers(compose_cfg, knob):
    spec = _spec(compose_cfg, "trainer.epochs=1", "regularizers=[l2,dropout]")
    fast = _spec(compose_cfg, "trainer.epochs=1", "regularizers=[l2,dropout]", knob)
    splits = data.load(spec.dataset)
    ref = train_population(splits, spec.model, spec.trainer, members_for(spec), "cpu")
    got = train_population(splits, fast.model, fast.trainer, members_for(fast), "cpu")
    tol = 0.05 if "bf16" in knob else 1e-4
    torch.testing.assert_close(got.final, ref.final, rtol=tol, atol=tol)
    assert got.steps == ref.steps
    if "bf16" in knob:
        assert not torch.equal(got.final, ref.final)  # autocast did run the matmuls in bfloat16


def test_several_strengths_in_one_population_equal_each_trained_separately(compose_cfg):
    """Per-member strengths: a sweep over strengths is one population, and each member is its own run."""
    from regbench import regularizers
    from regbench.train.population import Member

    settings = [
        ("l2", {"strength": 1e-3}),
        ("l2", {"strength": 3e-2}),
        ("dropout", {"p": 0.1}),
        ("dropout", {"p": 0.5}),
        ("augment", {"strength": 0.5}),
        ("augment", {"strength": 2.0}),
        ("mixup", {"alpha": 0.2}),
        ("mixup", {"alpha": 2.0}),
        ("weight_decay", {"strength": 0.1}),
        ("weight_decay", {"strength": 1.0}),
    ]
    spec = _spec(compose_cfg, "trainer.seeds=1")
    splits = data.load(spec.dataset)
    members = [Member("baseline", 0)] + [
        Member(name, i % 2, {name: regularizers.get(name).Config(**kw)}) for i, (name, kw) in enumerate(settings)
    ]
    finals = assert_trained_alone_equals_together(splits, spec, members, range(len(members)), tol=0).final
    for a in range(1, len(members), 2):  # and the strengths matter: two settings of one regularizer differ
        assert not torch.allclose(finals[a], finals[a + 1], atol=1e-3)


def test_evaluation_gives_a_member_the_same_bits_whatever_the_chunking(compose_cfg, monkeypatch):
    """Evaluation runs in chunks of rows sized by K (memory); a member's loss must not depend on them."""
    import regbench.train.evaluate as evaluation

    monkeypatch.setattr(evaluation, "_CHUNK_ELEMENTS", 8192)  # K=2: 16 rows a chunk, K=5: 6 rows
    spec = validate_config(compose_cfg())  # the full-size default split: thousands of rows, hundreds of chunks
    splits = data.load(spec.dataset)

    def build(seeds):
        return models.build(spec.model, splits.input_shape, splits.kind, 10, seeds, ModelHints.plain(len(seeds)))

    five = evaluate(build([0, 1, 2, 3, 4]), splits, torch.arange(5))
    two = evaluate(build([3, 4]), splits, torch.tensor([3, 4]))
    assert torch.equal(five[3:], two)


def test_evaluation_chunks_are_sized_by_the_models_widest_tensor(compose_cfg, monkeypatch):
    """A chunk holds _CHUNK_ELEMENTS elements of the model's widest tensor per example (eval_width): the CNN's is
    its second layer's im2col patches, 10 positions x 5 taps x 25 channels on MNIST-1D, not 256."""
    import regbench.train.evaluate as evaluation

    spec = _spec(compose_cfg, "model=cnn")
    splits = data.load(spec.dataset)
    model = models.build(spec.model, splits.input_shape, splits.kind, 10, [0, 1], ModelHints.plain(2))
    assert model.eval_width == 10 * 5 * 25
    rows = []
    forward = type(model).forward
    monkeypatch.setattr(type(model), "forward", lambda self, x, ctx: rows.append(len(x)) or forward(self, x, ctx))
    evaluate(model, splits, torch.tensor([0, 1]))
    assert max(rows) == evaluation._CHUNK_ELEMENTS // (2 * 1250)


@pytest.mark.parametrize("model,layers", [("mlp", 3), ("cnn", 4)])
def test_each_layer_updated_as_soon_as_its_gradients_are_complete_gives_the_bits_of_one_whole_step(
    compose_cfg, monkeypatch, model, layers
):
    """On the CPU the hand-written step (the MLP's, the CNN's) hands each layer to the optimizer (and the
    closed-form penalties) as soon as its gradients are complete; that is a matter of speed only: the trained
    members are the same, bit for bit."""
    from regbench import regularizers
    from regbench.regularizers.base import Regularizer
    from regbench.train import optim
    from regbench.train.population import Member

    spec = _spec(compose_cfg, "trainer.epochs=2", f"model={model}")
    splits = data.load(spec.dataset)
    regs = {"l1": {"strength": 1e-3}, "elastic_net": {"strength": 1e-3, "l1_ratio": 0.5}, "dropout": {"p": 0.2}}
    members = [Member("baseline", 0)] + [Member(n, 0, {n: regularizers.get(n).Config(**kw)}) for n, kw in regs.items()]
    calls = []
    real = optim.Optimizer.step_group
    monkeypatch.setattr(optim.Optimizer, "step_group", lambda self, i: calls.append(i) or real(self, i))
    by_layer = train_population(splits, spec.model, spec.trainer, members, "cpu")
    steps = by_layer.steps
    order = list(range(layers - 1, -1, -1))  # output layer first; from the second step
    assert calls[:layers] == order and len(calls) == layers * (steps - 1)
    calls.clear()
    monkeypatch.setattr(Regularizer, "layerwise", classmethod(lambda cls: False))  # one whole step after the pass
    whole = train_population(splits, spec.model, spec.trainer, members, "cpu")
    assert not calls
    assert torch.equal(by_layer.final, whole.final)
