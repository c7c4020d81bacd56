"""The image models (models/images.py) and stochastic depth: the textbook parameter counts, any image size, what
norm=none/batch switch, and the stochastic_depth regularizer's wiring into the ResNet's residual blocks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from regbench import data, models, preflight
from regbench.config import validate_config
from regbench.errors import UsageError
from regbench.experiment import run_experiment
from regbench.models.base import ModelHints
from regbench.models.func import StochasticDepth
from regbench.models.images import RESNET_BLOCKS, VGG, PreActResNet, ResNetConfig, VggConfig
from regbench.models.layers import Context
from regbench.train.population import members_for

from .conftest import assert_trained_alone_equals_together, run_cli

# tiny settings: an 8x8 digit through a ResNet-10 of width 4 trains in a fraction of a second
TINY = ["dataset=digits", "dataset.train_size=200", "trainer.epochs=1", "trainer.seeds=2", "trainer.progress=off"]
RESNET = ["model=resnet", "model.width=4", "model.depth=10"]


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_preact_resnet18_has_its_known_parameter_count():
    # 11,171,146 in the usual CIFAR PreActResNet-18 (kuangliu/pytorch-cifar), plus the final BN's 2 x 512, which
    # He et al.'s pre-activation design puts after the last block
    assert n_params(PreActResNet((2, 2, 2, 2), 64, 3, 10)) == 11_171_146 + 1024
    assert len([m for m in PreActResNet().modules() if isinstance(m, StochasticDepth)]) == 8
    blocks = PreActResNet(RESNET_BLOCKS[34]).modules()
    assert len([m for m in blocks if isinstance(m, StochasticDepth)]) == 16


def test_vgg11_has_its_known_parameter_count():
    net = VGG(width=64)
    assert n_params(net.features) == 9_231_114 - 5130  # VGG-11 with BN on CIFAR, less its 512->10 head
    assert n_params(net.classifier) == 2 * (512 * 512 + 512) + 512 * 10 + 10
    assert len([m for m in net.modules() if isinstance(m, nn.Dropout)]) == 2


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32), (1, 28, 28), (3, 9, 13)])
@pytest.mark.parametrize("net", [PreActResNet, VGG])
def test_any_image_size_gives_one_logit_per_class(net, shape):
    out = net(RESNET_BLOCKS[10] if net is PreActResNet else (1, "M", 2, "M", 4, "M", 8, "M", 8, "M"), 4, shape[0], 7)(
        torch.randn(2, *shape)
    )
    assert out.shape == (2, 7)


@pytest.mark.parametrize("cfg", [ResNetConfig(norm="none"), VggConfig(norm="none"), ResNetConfig(), VggConfig()])
def test_what_a_model_offers_the_regularizers_is_what_its_network_has(cfg):
    """offers() is declared, not found by building the network: check the declaration against the layers."""
    entry = models.get(cfg.name)
    net = entry.cls.module(cfg, (3, 32, 32), 10)
    has = {
        "dropout": any(isinstance(m, nn.Dropout) for m in net.modules()),
        "residual": any(isinstance(m, StochasticDepth) for m in net.modules()),
        "batch_norm": any(isinstance(m, nn.BatchNorm2d) for m in net.modules()) and cfg.norm == "none",
    }
    assert entry.cls.offers(cfg, (3, 32, 32), "image", 10) == {place for place, there in has.items() if there}


def _build(cfg, hints: ModelHints, seeds, shape=(1, 8, 8)):
    return models.build(cfg, shape, "image", 10, seeds, hints)


def _forward(model, x, train: bool, k: int):
    ctx = Context(seeds=torch.arange(k), step=3, train=train)
    return model(x.expand(k, *x.shape), ctx)


def _batch_dependent(model, k: int) -> list[bool]:
    """Per member: does a training forward of example 0 change with the rest of the batch? (batch statistics)"""
    torch.manual_seed(0)
    x = torch.randn(8, 1, 8, 8)
    y = x.clone()
    y[1:] = torch.randn(7, 1, 8, 8) * 3 + 1
    with torch.no_grad():
        a, b = _forward(model, x, True, k), _forward(model, y, True, k)
    return [not torch.allclose(a[i, 0], b[i, 0], atol=1e-6) for i in range(k)]


@pytest.mark.parametrize("cls,depth", [(ResNetConfig, 10), (VggConfig, 11)])
def test_norm_batch_keeps_bn_in_every_member_and_norm_none_leaves_it_to_the_batch_norm_regularizer(cls, depth):
    hints = ModelHints.plain(2)
    assert _batch_dependent(_build(cls(width=4, depth=depth), hints, [0, 0]), 2) == [True, True]
    plain = _build(cls(width=4, depth=depth, norm="none"), hints, [0, 0])
    assert _batch_dependent(plain, 2) == [False, False]
    hints.batch_norm = torch.tensor([False, True])
    switched = _build(cls(width=4, depth=depth, norm="none"), hints, [0, 0])
    assert _batch_dependent(switched, 2) == [False, True]


def _sd_model(p: float):
    hints = ModelHints.plain(2)
    hints.stochastic_depth = torch.tensor([0.0, p])
    return _build(ResNetConfig(depth=10, width=4, norm="none"), hints, [0, 0])  # both members: seed 0's weights


def test_stochastic_depth_is_identity_at_evaluation_and_drops_branches_per_example_in_training():
    model = _sd_model(0.5)
    x = torch.randn(64, 1, 8, 8)
    with torch.no_grad():
        ev, tr = _forward(model, x, False, 2), _forward(model, x, True, 2)
        again = model(x.expand(2, *x.shape), Context(seeds=torch.arange(2), step=4, train=True))
    torch.testing.assert_close(ev[1], ev[0], rtol=0, atol=1e-6)  # same weights: p only acts in training
    torch.testing.assert_close(tr[0], ev[0], rtol=0, atol=1e-6)  # p=0 (and no BN): training is evaluation
    assert ((tr[1] - ev[1]).abs().amax(-1) > 1e-5).all()  # every example lost a branch or had kept ones rescaled
    # the next step redraws each example's blocks: of 16 patterns, some examples draw the same one again, most not
    redrawn = (again[1] - tr[1]).abs().amax(-1) > 1e-5
    assert 0 < redrawn.sum() < 64
    torch.testing.assert_close(again[0], tr[0], rtol=0, atol=1e-6)


def test_the_regularizers_p_reaches_the_blocks_by_the_linear_rule():
    """Block l of L (ResNet-18: 8 blocks) drops with p*l/L in the regularized member, never in the baseline."""
    p = 0.4
    hints = ModelHints.plain(2)
    hints.stochastic_depth = torch.tensor([0.0, p])
    model = _build(ResNetConfig(depth=18, width=2), hints, [0, 1])
    rates = [b for name, b in model.named_buffers() if name.endswith("drop_path__keyed__p")]
    assert len(rates) == 8
    for i, r in enumerate(rates, 1):
        torch.testing.assert_close(r, torch.tensor([0.0, p * i / 8]))


def _refusal(model: str) -> str:
    return (
        f"regularizers.stochastic_depth: model={model} has no residual blocks for it to act on; "
        "models that have: resnet|torch"
    )


@pytest.mark.parametrize("model", ["cnn", "vgg"])
def test_stochastic_depth_is_refused_on_models_without_residual_blocks(model):
    with pytest.raises(UsageError) as e:
        preflight.check(["dataset=digits", f"model={model}", "regularizers=[stochastic_depth]"])
    assert str(e.value) == _refusal(model)


def test_batch_norm_on_a_resnet_with_its_own_batch_norm_is_refused_naming_the_option_that_frees_it():
    with pytest.raises(UsageError) as e:
        preflight.check(["dataset=digits", "model=resnet", "regularizers=[batch_norm]"])
    assert str(e.value) == (
        "regularizers.batch_norm: model=resnet has no normalization layers it can switch (nn.BatchNorm*) for it to "
        "act on (model.norm=none gives it some); models that have: mlp|cnn|resnet|vgg|torch"
    )
    assert preflight.check(["dataset=digits", "model=resnet", "model.norm=none", "regularizers=[batch_norm]"]) == 1


@pytest.mark.slow  # a subprocess: 7-8 s on the shared CI machine
def test_stochastic_depth_on_the_mlp_is_refused_by_the_real_command_before_any_folder(tmp_path):
    r = run_cli("run", "dataset=digits", "regularizers=[stochastic_depth]", cwd=tmp_path)
    assert (r.returncode, r.stderr, r.stdout) == (2, f"regbench: error: {_refusal('mlp')}\n", "")
    assert list(tmp_path.iterdir()) == []


def test_a_resnet_with_stochastic_depth_trains(compose_cfg):
    cfg = compose_cfg(*TINY, *RESNET, "regularizers=[stochastic_depth]")
    record = run_experiment(cfg)
    arms = [m["arm"] for m in record["members"]]
    assert arms == ["baseline", "baseline", "stochastic_depth", "stochastic_depth"]
    losses = [m["final"]["train_loss"] for m in record["members"]]
    assert None not in losses
    assert losses[2] != losses[0] and losses[3] != losses[1]  # the same seeds' weights: the drops changed training


def test_a_resnet_member_in_a_population_equals_itself_alone(compose_cfg):
    spec = validate_config(compose_cfg(*TINY, *RESNET, "model.norm=none", "regularizers=[stochastic_depth,batch_norm]"))
    splits = data.load(spec.dataset)
    members = members_for(spec)  # 2 baseline + 2 regularized
    assert_trained_alone_equals_together(splits, spec, members, (1, 2))
