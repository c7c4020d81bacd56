"""The member-batched convolution (im2col and a batched product, channels-last) against torch's own convolution."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from regbench import rng
from regbench.models.layers import BatchedConv, Context, MemberBatchNorm, Patches, plan

K, B, C_OUT = 3, 4, 6


def _conv(dims: int, c_in: int, kernel: int = 5, stride: int = 2) -> BatchedConv:
    return BatchedConv([rng.generator(s, "test") for s in range(K)], dims, c_in, C_OUT, kernel, stride).double()


def _reference(conv: BatchedConv, x: torch.Tensor) -> torch.Tensor:
    """F.conv1d/conv2d, member by member, on the usual [B, C, *S] layout; back to [K, B, *S_out, C_out]."""
    f = F.conv1d if conv.dims == 1 else F.conv2d
    w, b = conv.weight.view(K, C_OUT, *conv.weight.shape[1:]), conv.bias.view(K, C_OUT)
    ys = [f(x[j].movedim(-1, 1), w[j], b[j], conv.stride, conv.padding) for j in range(K)]
    return torch.stack(ys).movedim(2, -1)


@pytest.mark.parametrize(
    "dims,size,c_in,kernel,stride",
    [(1, (40,), 1, 5, 2), (1, (20,), 3, 5, 2), (1, (9,), 2, 3, 1), (2, (8, 8), 1, 5, 2), (2, (7, 9), 3, 5, 2)],
)
def test_batched_conv_equals_torch_conv_forward_and_gradients(dims, size, c_in, kernel, stride):
    conv = _conv(dims, c_in, kernel, stride)
    x = torch.randn(K, B, *size, c_in, dtype=torch.float64, requires_grad=True)
    y = conv(x)
    ref = _reference(conv, x)
    assert y.shape == ref.shape
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, conv.weight, conv.bias), g)
    want = torch.autograd.grad(ref, (x, conv.weight, conv.bias), g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dims,size", [(1, (11,)), (2, (4, 4)), (2, (5, 6))])  # (4, 4): four blocks
def test_patches_backward_is_the_adjoint_of_its_forward(dims, size):
    x = torch.randn(1, 2, *size, 1, dtype=torch.float64, requires_grad=True)
    blocks = plan(size, 5, 2, 2)
    assert torch.autograd.gradcheck(lambda z: Patches.apply(z, blocks, dims, 2, 2), (x,))


@pytest.mark.parametrize("dims,size,c_in", [(1, (40,), 1), (2, (8, 8), 3)])
def test_a_shared_input_gives_what_each_member_computes_on_its_own_copy(dims, size, c_in):
    conv = _conv(dims, c_in)
    x = torch.randn(B, *size, c_in, dtype=torch.float64)
    shared = conv(x)
    assert shared.shape == (K, B, *conv(x.expand(K, *x.shape)).shape[2:])
    torch.testing.assert_close(shared, conv(x.expand(K, *x.shape)), rtol=1e-12, atol=1e-12)


def test_member_batch_norm_normalises_each_member_and_channel_over_batch_and_positions():
    """[K, B, *S, C] viewed as [K, B*S, C]: the statistics torch's batch norm takes of one member's [B, C, *S]."""
    enabled = torch.tensor([True, False, True])
    bn = MemberBatchNorm(enabled, C_OUT).double()
    x = torch.randn(K, B, 5, C_OUT, dtype=torch.float64) * 3 + 1
    out = bn(x.view(K, -1, C_OUT), Context(seeds=torch.arange(K), train=True)).reshape(x.shape)
    for j in range(K):
        want = F.batch_norm(x[j].movedim(-1, 1), None, None, training=True) if enabled[j] else x[j].movedim(-1, 1)
        torch.testing.assert_close(out[j].movedim(-1, 1), want)
    mean = x[0].reshape(-1, C_OUT).mean(0)  # running statistics: member 0's, after one step of momentum 0.1
    torch.testing.assert_close(bn.running_mean[:C_OUT], 0.1 * mean)


def test_small_images_skip_the_padding_and_still_equal_torch_conv():
    """4x4 -> 2x2 (k=5, pad 2): half a window is padding; the product is split in blocks that read only the input."""
    assert len(plan((4, 4), 5, 2, 2)) == 4 and plan((2, 2), 5, 2, 2)[0][1] == ((2, 4), (2, 4))
    assert len(plan((40,), 5, 2, 2)) == 1  # MNIST-1D: little padding, one product
    for size in ((4, 4), (2, 2), (3, 5)):
        conv = _conv(2, 3)
        x = torch.randn(K, B, *size, 3, dtype=torch.float64, requires_grad=True)
        y, ref = conv(x), _reference(conv, x)
        torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
        g = torch.randn_like(y)
        for a, b in zip(torch.autograd.grad(y, (x, conv.weight), g), torch.autograd.grad(ref, (x, conv.weight), g)):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(conv(x[0].detach()), _reference(conv, x[0].detach().expand(K, *x.shape[1:])))


@pytest.mark.slow  # two short trainings each, with evaluation on the whole splits
@pytest.mark.parametrize("dataset", [["dataset=mnist1d", "dataset.num_samples=600"], ["dataset=digits"]])
def test_a_cnn_population_trained_twice_gives_bit_identical_numbers(compose_cfg, dataset):
    from regbench import data
    from regbench.config import validate_config
    from regbench.train.engine import train_population
    from regbench.train.population import members_for

    cfg = compose_cfg(*dataset, "model=cnn", "model.channels=4", "trainer.steps=6", "trainer.seeds=2",
                      "trainer.progress=off", "regularizers=[dropout,batch_norm]")  # fmt: skip
    spec = validate_config(cfg)
    splits, members = data.load(spec.dataset), members_for(spec)
    runs = [train_population(splits, spec.model, spec.trainer, members, "cpu") for _ in range(2)]
    assert torch.equal(runs[0].final, runs[1].final) and runs[0].history == runs[1].history
    assert torch.isfinite(runs[0].final).all()


@pytest.mark.parametrize("p", [[0.0, 0.3, 0.5], [0.2, 0.0, 0.4]])  # members that drop in one block, and scattered
@pytest.mark.parametrize("size", [(10,), (4, 3)])
def test_relu_dropout_equals_relu_then_each_members_own_mask(p, size):
    """MemberDropout.relu (one node, multipliers for the dropping members only, no mask backward) gives the bits of
    relu and then a multiply by each member's mask: u >= p over its seed's draw in [K, B, C, *S], moved channels-last,
    times 1/(1-p); forward and gradient, members that do not drop untouched; and is a plain ReLU at evaluation."""
    from regbench.models.layers import MemberDropout

    probs = torch.tensor(p)
    drop = MemberDropout(probs, "dropout.0")
    seeds = torch.tensor([11, 12, 13])
    h = torch.randn(K, B, *size, C_OUT, requires_grad=True)
    ctx = Context(seeds=seeds, step=7, train=True)
    y = drop.relu(h, ctx)
    u = rng.Stream(seeds, rng.stream_id("dropout.0")).uniform(7, (B, C_OUT, *size))  # [K, B, C, *S]
    pk = probs.view(-1, *([1] * (u.dim() - 1)))
    want = h.relu() * ((u >= pk) / (1 - pk)).movedim(2, -1)
    assert torch.equal(y, want)
    assert (y == 0).float().mean() - (h <= 0).float().mean() > 0  # some units were dropped
    g = torch.randn_like(y)
    assert torch.equal(torch.autograd.grad(y, h, g)[0], torch.autograd.grad(want, h, g)[0])
    assert torch.equal(drop.relu(h, Context(seeds=seeds, step=7, train=False)), h.relu())


@pytest.mark.parametrize(
    "shape,dropout,input_dropout,soft",
    [
        ((40,), 0.0, 0.0, False),  # MNIST-1D's shape, no dropout: one block per layer
        ((40,), 0.3, 0.2, True),  # dropout on some members, input dropout, soft targets (label smoothing, mixup)
        ((1, 8, 8), 0.4, 0.0, False),  # digits' shape: the small layers are computed in blocks that skip padding
        ((3, 7, 9), 0.2, 0.1, False),  # several input channels, uneven sides
    ],
)
def test_the_cnns_hand_written_step_matches_autograd(shape, dropout, input_dropout, soft):
    """models/cnn_fast.py against the CNN's forward through autograd: every gradient (each written over a NaN,
    as the engine does not clear them for it), and the finite flags, alike to rounding."""
    import contextlib
    import copy

    from regbench import models
    from regbench.models.base import ModelHints
    from regbench.models.cnn import CnnConfig
    from regbench.train.engine import autograd_step

    seeds = [0, 1, 2, 0]
    hints = ModelHints.plain(len(seeds))
    hints.dropout = torch.tensor([0.0, dropout, dropout / 2, dropout])
    hints.input_dropout = torch.tensor([input_dropout, 0.0, input_dropout, 0.0])
    kind = "sequence" if len(shape) == 1 else "image"
    by_hand = models.build(CnnConfig(channels=6), shape, kind, 5, seeds, hints)
    auto = copy.deepcopy(by_hand)
    step = by_hand.fast_step()
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(len(seeds), 9, *shape, generator=gen)
    y = (
        torch.softmax(torch.randn(4, 9, 5, generator=gen) * 2, -1)
        if soft
        else torch.randint(0, 5, (4, 9), generator=gen)
    )
    ctx = Context(seeds=torch.tensor(seeds), step=11, train=True)
    for p in by_hand.parameters():
        p.grad = torch.full_like(p, float("nan"))
    for _ in range(2):  # the second step runs on the buffers and padding the first one left
        finite = step(x, y, ctx)
    assert torch.equal(finite, autograd_step(auto, contextlib.nullcontext(), x, y, ctx)) and bool(finite.all())
    for (name, p), q in zip(by_hand.named_parameters(), auto.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_the_cnn_keeps_autograd_with_batch_norm():
    from regbench import models
    from regbench.models.base import ModelHints
    from regbench.models.cnn import CnnConfig

    hints = ModelHints.plain(2)
    hints.batch_norm = torch.tensor([False, True])
    assert models.build(CnnConfig(channels=4), (20,), "sequence", 3, [0, 1], hints).fast_step() is None
    assert models.build(CnnConfig(channels=4), (20,), "sequence", 3, [0, 1], ModelHints.plain(2)).fast_step()
