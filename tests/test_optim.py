"""The flat-buffer optimizer: views share one buffer, updates match torch.optim, and no element's update depends
on where it sits in the buffer (what keeps a member equal to itself trained in any population)."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from regbench.train import optim


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(7, 13), nn.ReLU(), nn.Linear(13, 3))


def _trainer(kind: str) -> SimpleNamespace:
    return SimpleNamespace(optimizer=kind, lr=1e-2, momentum=0.9)


def _train(net: nn.Module, opt, steps: int = 25) -> None:
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(16, 7, generator=gen), torch.randint(0, 3, (16,), generator=gen)
        nn.functional.cross_entropy(net(x), y).backward()  # autograd accumulates into the flat views
        opt.step()
        opt.zero_grad()


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_flat_optimizer_matches_torch_optim_on_separate_tensors(kind):
    ours, theirs = _net(0), _net(0)
    _train(ours, optim.make(ours, _trainer(kind)))
    if kind == "adam":
        ref = torch.optim.Adam(theirs.parameters(), lr=1e-2)
    else:
        ref = torch.optim.SGD(theirs.parameters(), lr=1e-2, momentum=0.9)
    _train(theirs, ref)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        # SGD is the same arithmetic; fused Adam rounds with FMA, so allow a few ulps over 25 steps
        tol = 0 if kind == "sgd" else 1e-6
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


class _Shifted(nn.Module):
    """A net preceded by `shift` unrelated parameters: its elements sit at another offset in the flat buffer, as a
    member's do in populations of different sizes."""

    def __init__(self, shift: int):
        super().__init__()
        self.pre = nn.Parameter(torch.randn(shift)) if shift else None
        self.net = _net(0)

    def forward(self, x):
        out = self.net(x)
        return out if self.pre is None else out + 0 * self.pre.sum()


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_an_elements_update_does_not_depend_on_its_offset_in_the_buffer(kind):
    results = []
    # unpadded, shifts 1-6 put some of the net's elements in the fused kernel's scalar remainder: after 100 steps
    # ~50 of its 146 weights differ from the unshifted run
    for shift in (0, 1, 3, 6, 16, 37):
        model = _Shifted(shift)
        _train(model, optim.make(model, _trainer(kind)), steps=100)
        results.append([p.detach().clone() for p in model.net.parameters()])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


def test_parameters_and_gradients_are_views_of_the_flat_buffers():
    net = _net(0)
    before = [p.detach().clone() for p in net.parameters()]
    flat = optim.FlatParams(net)
    assert flat.param.numel() % optim.PAD == 0
    for p, old in zip(net.parameters(), before):
        assert torch.equal(p, old)  # values kept
        assert p.untyped_storage().data_ptr() == flat.param.untyped_storage().data_ptr()
        assert p.grad.untyped_storage().data_ptr() == flat.param.grad.untyped_storage().data_ptr()
    flat.param.data.fill_(2.0)
    assert all(bool((p == 2.0).all()) for p in net.parameters())


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_optimizer_state_round_trips(kind):
    a, b = _net(0), _net(0)
    opt_a, opt_b = optim.make(a, _trainer(kind)), optim.make(b, _trainer(kind))
    _train(a, opt_a, steps=3)
    b.load_state_dict(a.state_dict())
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))  # as from a checkpoint file: no shared tensors
    _train(a, opt_a, steps=2)
    _train(b, opt_b, steps=2)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_direct_fused_adam_steps_equal_torchs_own_steps_bit_for_bit():
    # after its first step the optimizer calls torch's fused kernel itself; torch.optim.Adam on a copy of the same
    # flat buffer is the reference, also across a state reload (which must hand the new state to the direct calls)
    net, ref_net = _net(0), _net(0)
    opt = optim.make(net, _trainer("adam"))
    ref_flat = optim.FlatParams(ref_net)
    adam = torch.optim.Adam([ref_flat.param], lr=1e-2, fused=True)
    ref = SimpleNamespace(step=adam.step, zero_grad=ref_flat.zero_grad)  # keep the gradient views: no set_to_none
    _train(net, opt, steps=5)
    _train(ref_net, ref, steps=5)
    assert opt.direct is not None
    opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    _train(net, opt, steps=5)
    _train(ref_net, ref, steps=5)
    assert torch.equal(opt.flat.param, ref_flat.param)
    assert torch.equal(opt.state_dict()["state"][0]["step"], adam.state_dict()["state"][0]["step"])


def _layers(net: nn.Module) -> list[list[nn.Parameter]]:
    return [[m.weight, m.bias] for m in net if isinstance(m, nn.Linear)]


def test_each_group_gets_a_padded_block_of_its_own():
    net = _net(0)
    flat = optim.FlatParams(net, _layers(net))
    assert len(flat.blocks) == 2 and flat.blocks[0][0] == 0 and flat.blocks[-1][1] == flat.param.numel()
    for (start, end), group in zip(flat.blocks, _layers(net)):
        assert start % optim.PAD == 0 and end % optim.PAD == 0
        first = group[0].data_ptr() - flat.param.data_ptr()
        assert first == start * flat.param.element_size()  # the group's parameters open its block
        assert sum(p.numel() for p in group) <= end - start < sum(p.numel() for p in group) + optim.PAD


def test_adam_a_block_at_a_time_equals_one_whole_step_bit_for_bit():
    """The engine steps each layer as soon as its gradients are complete; it must be the same update."""
    whole, blocks = _net(0), _net(0)
    opt_w = optim.make(whole, _trainer("adam"), _layers(whole))
    opt_b = optim.make(blocks, _trainer("adam"), _layers(blocks))
    gen = torch.Generator().manual_seed(1)
    for _ in range(60):
        x, y = torch.randn(16, 7, generator=gen), torch.randint(0, 3, (16,), generator=gen)
        for net, opt in ((whole, opt_w), (blocks, opt_b)):
            nn.functional.cross_entropy(net(x), y).backward()
            if opt is opt_b and opt.stepwise:  # from the second step
                opt.count_step()
                for i in reversed(range(len(opt.flat.blocks))):
                    opt.step_group(i)
            else:
                opt.step()
            opt.zero_grad()
    assert opt_b.stepwise  # 59 of the 60 steps went a block at a time
    for a, b in zip(whole.parameters(), blocks.parameters()):
        assert torch.equal(a, b)
    assert not any(torch.equal(a, b) for a, b in zip(whole.parameters(), _net(0).parameters()))  # it trained


def _adam_pair():
    """The same net twice: one under regbench's FusedAdam, one under torch.optim.Adam(fused=True), each on a flat
    buffer of its own."""
    ours, theirs = _net(0), _net(0)
    flat_o, flat_t = optim.FlatParams(ours), optim.FlatParams(theirs)
    mine = optim.FusedAdam(flat_o.param, lr=1e-2, capturable=False)
    torchs = torch.optim.Adam([flat_t.param], lr=1e-2, fused=True)
    return (ours, flat_o, mine), (theirs, flat_t, torchs)


def _steps(net, flat, opt, steps):
    _train(net, SimpleNamespace(step=opt.step, zero_grad=flat.zero_grad), steps=steps)


def test_fused_adam_writes_torchs_state_dict_and_reads_it_both_ways():
    (ours, flat_o, mine), (theirs, flat_t, torchs) = _adam_pair()
    assert mine.state_dict() == torchs.state_dict() == {"state": {}, "param_groups": mine.state_dict()["param_groups"]}
    _steps(ours, flat_o, mine, 4)
    _steps(theirs, flat_t, torchs, 4)
    a, b = mine.state_dict(), torchs.state_dict()
    assert a["param_groups"] == b["param_groups"] and a["state"].keys() == b["state"].keys() == {0}
    for key in ("step", "exp_avg", "exp_avg_sq"):
        x, y = a["state"][0][key], b["state"][0][key]
        assert x.dtype == y.dtype and x.device == y.device and torch.equal(x, y), key
    # torch resumes from ours and ours from torch's: both go on exactly as if never swapped
    (o2, f_o2, mine2), (t2, f_t2, torchs2) = _adam_pair()
    f_o2.param.data.copy_(flat_t.param)
    f_t2.param.data.copy_(flat_o.param)
    mine2.load_state_dict(copy.deepcopy(b))
    torchs2.load_state_dict(copy.deepcopy(a))
    for net, flat, opt in ((ours, flat_o, mine), (theirs, flat_t, torchs), (o2, f_o2, mine2), (t2, f_t2, torchs2)):
        _steps(net, flat, opt, 3)
    assert torch.equal(flat_o.param, flat_t.param)
    assert torch.equal(f_o2.param, flat_o.param) and torch.equal(f_t2.param, flat_o.param)
