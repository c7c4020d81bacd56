"""The counter-based generator: its bits are murmur3's, whatever the tensor arithmetic underneath."""

from __future__ import annotations

import torch

from regbench import rng


def _murmur_fmix32(v: int) -> int:
    v &= 0xFFFFFFFF
    v ^= v >> 16
    v = (v * 0x85EBCA6B) & 0xFFFFFFFF
    v ^= v >> 13
    v = (v * 0xC2B2AE35) & 0xFFFFFFFF
    return v ^ (v >> 16)


def _reference_uniform(seed: int, step: int, stream: int, element: int) -> float:
    key = _murmur_fmix32(seed * 0x9E3779B1 + stream)
    key = _murmur_fmix32(key ^ ((step * 0x85EBCA77) & 0xFFFFFFFF))
    bits = _murmur_fmix32(element * 0x27D4EB2F + key)
    return (bits >> 8) / (1 << 24)


def test_uniform_matches_pure_python_murmur3_bit_for_bit():
    # int32 multiplications must wrap modulo 2^32 and shifts must act as logical ones; large seeds, steps and
    # element indices drive every intermediate past 2^31
    seeds = torch.tensor([0, 1, 7, 2**31 + 5, 123456789])
    step, stream = 987654, rng.stream_id("dropout.0")
    u = rng.uniform(seeds, step, stream, (300, 70))
    flat = u.view(len(seeds), -1)
    for k, seed in enumerate(seeds.tolist()):
        for e in (0, 1, 2, 4095, 20999):
            assert flat[k, e].item() == _reference_uniform(seed, step, stream, e)


def test_uniform_is_uniform_and_keyed_by_seed_step_and_stream():
    seeds = torch.tensor([3, 3, 4])
    u = rng.uniform(seeds, 10, 1, (100_000,))
    assert torch.equal(u[0], u[1]) and not torch.equal(u[0], u[2])
    assert not torch.equal(u[0], rng.uniform(seeds, 11, 1, (100_000,))[0])
    assert not torch.equal(u[0], rng.uniform(seeds, 10, 2, (100_000,))[0])
    assert u.min() >= 0.0 and u.max() < 1.0
    hist = torch.histc(u[0], bins=10, min=0.0, max=1.0) / 100_000
    assert (hist - 0.1).abs().max() < 0.005  # ~5 standard errors


def test_stream_draws_equal_the_plain_function_across_key_blocks_and_step_tensors():
    seeds = torch.tensor([0, 9, 2**31 + 5])
    stream = rng.Stream(seeds, 77)
    for step in (0, 1, 255, 256, 3, 10_000, 10_255):  # crosses and revisits the blocks of precomputed keys
        want = rng.uniform(seeds, step, 77, (20, 30))
        assert torch.equal(stream.uniform(step, (20, 30)), want)
        assert torch.equal(stream.uniform(torch.tensor(step), (20, 30)), want)


def test_integer_threshold_gives_exactly_the_float_comparison():
    seeds = torch.tensor([1, 2, 3])
    stream = rng.Stream(seeds, 5)
    u = stream.uniform(4, (100, 100))
    # edge cases: 0, just below 1, and values equal to drawn uniforms (u >= p must hold there)
    for p in (0.0, 0.1, 0.5, 1 - 2**-24, float(u[0, 7, 7]), float(u[2, 0, 1])):
        p_t = torch.full((3,), p)
        kept = stream.kept(4, (100, 100), rng.keep_threshold(p_t))
        assert torch.equal(kept, (u >= p_t.view(-1, 1, 1)).float()), p


def test_members_sharing_a_seed_draw_their_seeds_bits_with_their_own_threshold():
    # hashed once per unique seed, then copied to each member: every row must equal its seed drawn alone
    seeds = torch.tensor([7, 2, 7, 9, 2, 7])
    p = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    stream = rng.Stream(seeds, 11)
    assert stream.rows is not None and stream.base.numel() == 3
    for step in (0, 5, 300):
        kept = stream.kept(step, (40, 25), rng.keep_threshold(p))
        u = stream.uniform(step, (40, 25))
        bits = stream.bits(step, (40, 25))
        for k, seed in enumerate(seeds.tolist()):
            alone = rng.Stream(torch.tensor([seed]), 11)
            assert torch.equal(u[k], alone.uniform(step, (40, 25))[0])
            assert torch.equal(bits[k], alone.bits(step, (40, 25))[0])
            assert torch.equal(kept[k], (u[k] >= p[k]).float())


def test_several_steps_at_once_equal_each_step_drawn_alone():
    p = torch.tensor([0.1, 0.5, 0.9])
    for seeds in (torch.tensor([4, 5, 6]), torch.tensor([4, 5, 4])):  # distinct seeds, and a shared one
        stream = rng.Stream(seeds, 21)
        for start in (0, 250, 1000):  # 250..257 crosses a block of precomputed keys
            block = stream.kept(start, (30, 20), rng.keep_threshold(p), steps=8)
            assert block.shape == (8, 3, 30, 20)
            for j in range(8):
                alone = rng.Stream(seeds, 21)
                assert torch.equal(block[j], alone.kept(start + j, (30, 20), rng.keep_threshold(p))), (start, j)


def test_members_repeating_the_seeds_in_order_take_their_rows_by_broadcasting_with_the_same_bits():
    # a sweep population's dropout members list the seeds once per setting: 2, 7, 9, 2, 7, 9, 2, 7, 9
    seeds = torch.tensor([2, 7, 9] * 3)
    p = torch.linspace(0.05, 0.85, 9)
    stream = rng.Stream(seeds, 13)
    assert stream.tiles == 3 and rng.Stream(torch.tensor([7, 2, 9, 2]), 13).tiles is None
    for steps in (0, 4):
        kept = stream.kept(250, (30, 20), rng.keep_threshold(p), steps=steps)
        kept = kept if steps else kept.unsqueeze(0)
        for j in range(max(steps, 1)):
            for k, seed in enumerate(seeds.tolist()):
                u = rng.Stream(torch.tensor([seed]), 13).uniform(250 + j, (30, 20))[0]
                assert torch.equal(kept[j, k], (u >= p[k]).float()), (j, k)
