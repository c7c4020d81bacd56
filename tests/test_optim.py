"""regbench's flat-buffer optimizers are torch.optim's, bit for bit, and see the gradients autograd leaves."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from regbench.train import optim


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(7, 13), nn.ReLU(), nn.Linear(13, 3))


@pytest.mark.parametrize("kind", ["adam", "sgd", "sgd0"])
def test_flat_optimizer_equals_torch_optim_bit_for_bit(kind):
    ours, theirs = _net(0), _net(0)
    flat = optim.FlatParams(ours)
    if kind == "adam":
        opt, ref = optim.Adam(flat, lr=1e-2), torch.optim.Adam(theirs.parameters(), lr=1e-2, foreach=True)
    else:
        momentum = 0.9 if kind == "sgd" else 0.0
        opt = optim.SGD(flat, lr=0.1, momentum=momentum)
        ref = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=momentum, foreach=True)
    gen = torch.Generator().manual_seed(1)
    for _ in range(25):
        x, y = torch.randn(16, 7, generator=gen), torch.randint(0, 3, (16,), generator=gen)
        for net in (ours, theirs):
            nn.functional.cross_entropy(net(x), y).backward()  # autograd accumulates into the flat views
        opt.step()
        ref.step()
        opt.zero_grad()
        ref.zero_grad()
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)


def test_parameters_and_gradients_are_views_of_the_flat_buffers():
    net = _net(0)
    before = [p.detach().clone() for p in net.parameters()]
    flat = optim.FlatParams(net)
    for p, old in zip(net.parameters(), before):
        assert torch.equal(p, old)  # values kept
        assert p.untyped_storage().data_ptr() == flat.data.untyped_storage().data_ptr()
        assert p.grad.untyped_storage().data_ptr() == flat.grad.untyped_storage().data_ptr()
    flat.data.fill_(2.0)
    assert all(bool((p == 2.0).all()) for p in net.parameters())


def test_adam_state_round_trips():
    a, b = _net(0), _net(0)
    opt_a, opt_b = optim.Adam(optim.FlatParams(a), lr=1e-2), optim.Adam(optim.FlatParams(b), lr=1e-2)
    x, y = torch.randn(16, 7), torch.randint(0, 3, (16,))
    for _ in range(3):
        nn.functional.cross_entropy(a(x), y).backward()
        opt_a.step()
        opt_a.zero_grad()
    b.load_state_dict(a.state_dict())
    opt_b.load_state_dict(opt_a.state_dict())
    for net, opt in ((a, opt_a), (b, opt_b)):
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
