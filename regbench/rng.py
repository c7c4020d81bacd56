"""Counter-based randomness keyed by (member seed, step, stream), not by a member's place in a population.

A member's dropout masks and augmentations depend only on its own seed and the step, so it draws the same numbers
whether it trains alone, beside its baseline, or inside a sweep batch of hundreds; that is what makes "a member
trained in a population equals the member trained alone" hold. The hash is murmur3's 32-bit finalizer over a
combined counter. Seeds and steps are combined with their constants in int64 (they may pass 2^31) and reduced to
their low 32 bits; the hash itself runs in int32, whose multiplications wrap modulo 2^32 exactly as murmur3 wants,
on CPU and CUDA alike: it draws dropout masks every step, and in int64 arithmetic it would cost more than the matmuls
it regularizes (1.1 ms against 0.2 ms for a [12, 100, 100] mask on 2 CPU cores). Tests check the bits against a
pure-Python murmur3.
"""

from __future__ import annotations

import torch

_MASK32 = 0xFFFFFFFF


# int32 views of the 32-bit constants: wrapping int32 arithmetic gives murmur3's low 32 bits
def _i32(c: int) -> int:
    return c - (1 << 32) if c >= 1 << 31 else c


_C1, _C2, _CIDX = _i32(0x85EBCA6B), _i32(0xC2B2AE35), _i32(0x27D4EB2F)


class _Constants:
    """The hash's constants as 0-d int32 tensors: a Python int in an int32 operation costs a conversion kernel
    each time, and a dropout draw has a dozen of them. 0-d CPU tensors combine with tensors on any device."""

    def __init__(self):
        i32 = torch.int32
        self.c1, self.c2 = torch.tensor(_C1, dtype=i32), torch.tensor(_C2, dtype=i32)
        self.m16, self.m19 = torch.tensor(0xFFFF, dtype=i32), torch.tensor(0x7FFFF, dtype=i32)
        self.s16, self.s13 = torch.tensor(16, dtype=i32), torch.tensor(13, dtype=i32)
        self.s8, self.m24 = torch.tensor(8, dtype=i32), torch.tensor(0xFFFFFF, dtype=i32)
        self.s31 = torch.tensor(31, dtype=i32)


_K = _Constants()


def _fmix32(x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
    """murmur3's 32-bit finalizer on an int32 tensor, in place, with tensor constants and a scratch tensor t of x's
    shape; `>>` is arithmetic for signed ints, hence the masks."""
    t = torch.empty_like(x) if t is None else t
    torch.bitwise_right_shift(x, _K.s16, out=t)
    x ^= t.bitwise_and_(_K.m16)
    x *= _K.c1
    torch.bitwise_right_shift(x, _K.s13, out=t)
    x ^= t.bitwise_and_(_K.m19)
    x *= _K.c2
    torch.bitwise_right_shift(x, _K.s16, out=t)
    x ^= t.bitwise_and_(_K.m16)
    return x


def _top24(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The top 24 bits of the hash x as integers in [0, 2^24), into t: a uniform is top24 / 2^24."""
    torch.bitwise_right_shift(x, _K.s8, out=t)
    return t.bitwise_and_(_K.m24)


def stream_id(name: str) -> int:
    """A stable 32-bit id for a named random stream (e.g. 'dropout.1'), independent of Python's hash seed."""
    h = 2166136261
    for ch in name.encode():
        h = ((h ^ ch) * 16777619) & _MASK32
    return h


def _to_i32(x: torch.Tensor) -> torch.Tensor:
    """int64 values in [0, 2^32) as the int32 tensor with the same low 32 bits."""
    return (((x + (1 << 31)) & _MASK32) - (1 << 31)).to(torch.int32)


class Stream:
    """One named stream for fixed member seeds, for draws repeated every step (dropout masks).

    Tiny kernels cost ~10 us each on CPU whatever their size, and deriving a step's keys takes a dozen: keys are
    mixed for 256 steps at a time, each shape's element counters are kept, and the per-element pass reuses scratch
    tensors, so a step's draw is little more than the hash itself. Members with the same seed draw the same bits,
    so each seed is hashed once and its members take copies of its row: a strength sweep's members share their seeds
    (the benchmark's twelve dropout members hold four). `kept` can draw several consecutive steps in one pass: the
    same bits, a dozen kernels fewer per step.
    """

    BLOCK = 256  # steps whose keys are mixed at once

    def __init__(self, seeds: torch.Tensor, stream: int):
        unique, rows = torch.unique(seeds, return_inverse=True)
        if len(unique) == len(seeds):
            unique, rows = seeds, None
        self.rows = rows  # each member's row among the unique seeds, None when no seed repeats
        # R when the members are R repeats of the unique seeds in order (a sweep population's usual layout: each
        # setting's members list the seeds): `kept` then expands the rows by broadcasting, not by index_select
        self.tiles = None
        if rows is not None and len(seeds) % len(unique) == 0:
            tiled = torch.arange(len(unique), device=rows.device).repeat(len(seeds) // len(unique))
            self.tiles = len(seeds) // len(unique) if torch.equal(rows, tiled) else None
        self.base = _fmix32(_to_i32((unique.to(torch.int64) * 0x9E3779B1 + stream) & _MASK32))
        self.counters: dict[tuple[int, ...], torch.Tensor] = {}
        self.scratch: dict[tuple[int, ...], tuple[torch.Tensor, ...]] = {}  # reused per size (_scratch): no page faults
        self.block_start, self.block = -1, None

    def keys(self, step, steps: int = 1) -> torch.Tensor:
        """[steps, U] int32 keys of steps step..step+steps-1, one per unique seed: the step a Python int, or a 0-d
        device tensor (a compiled or graph-captured loop never syncs; one step)."""
        if not isinstance(step, int):
            return _fmix32(self.base ^ _to_i32((step.to(torch.int64) * 0x85EBCA77) & _MASK32)).view(1, -1)
        if self.block is None or not 0 <= step - self.block_start <= self.BLOCK - steps:
            steps_t = torch.arange(step, step + max(self.BLOCK, steps), device=self.base.device, dtype=torch.int64)
            self.block = _fmix32(self.base ^ _to_i32((steps_t * 0x85EBCA77) & _MASK32).view(-1, 1))
            self.block_start = step
        return self.block[step - self.block_start : step - self.block_start + steps]

    def _hash(self, step, shape: tuple[int, ...], steps: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """([steps, U, *shape] int32 hash bits, a scratch tensor of that shape); both overwritten by the next draw."""
        idx = self.counters.get(shape)
        if idx is None:
            n = 1
            for s in shape:
                n *= s
            idx = self.counters[shape] = torch.arange(n, device=self.base.device, dtype=torch.int32).view(shape) * _CIDX
        x, t = self._scratch(steps, shape)[:2]
        torch.add(idx, self.keys(step, steps).view(steps, -1, *([1] * len(shape))), out=x)
        return _fmix32(x, t), t

    def _scratch(self, steps: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
        """Two [steps, U, *shape] int32 tensors for the hash, reused by every draw of that size."""
        full = (steps, self.base.numel(), *shape)
        made = self.scratch.get(full)
        if made is None:
            made = tuple(torch.empty(full, dtype=torch.int32, device=self.base.device) for _ in range(2))
            self.scratch[full] = made
        return made

    def _members(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """[steps, U, ...] rows of the unique seeds as [steps, K, ...] rows of the members."""
        if self.rows is None:
            return x if out is None else out.copy_(x)
        return torch.index_select(x, 1, self.rows, out=out)

    def bits(self, step, shape: tuple[int, ...]) -> torch.Tensor:
        """[K, *shape] int32 hash bits; row k a function of (seeds[k], step, stream, element) only."""
        return self._members(self._hash(step, shape)[0])[0]

    def uniform(self, step, shape: tuple[int, ...]) -> torch.Tensor:
        """Uniform [0, 1) floats of shape [K, *shape]: the top 24 bits of the hash over 2^24."""
        top = _top24(*self._hash(step, shape))
        return self._members(top.to(torch.float32) * (1.0 / (1 << 24)))[0]

    def kept(
        self, step, shape: tuple[int, ...], threshold: torch.Tensor, steps: int = 0, out=None, value=None
    ) -> torch.Tensor:
        """value[k] where uniform(step, shape) >= p, else 0.0 (value None: 1.0): float32 [K, *shape], given
        threshold = keep_threshold(p) ([K]). With steps > 0, the decisions of steps step..step+steps-1 at once, as
        [steps, K, *shape] (into `out` when given). Dropout passes value = 1/(1-p): its multipliers in one pass.

        The decisions in int32 arithmetic, with no bool tensor (on CPU a kernel that writes or reads one takes
        30-45 us for a [12, 100, 100] mask, an int32 or float32 one 4-7 us) and no float conversion: the uniform is
        u = top / 2^24 with top the hash's top 24 bits, so u >= p exactly when top >= ceil(p * 2^24), that is when
        threshold - top < 0 (no overflow: both are below 2^24). An arithmetic shift by 31 turns that sign into all
        ones or all zeros, and those AND value's bits are value or +0.0."""
        n = max(steps, 1)
        top = _top24(*self._hash(step, shape, n))
        ones = [1] * len(shape)
        k = threshold.numel()
        if value is None:
            value = torch.ones(k, device=threshold.device)
        result = out if out is not None else torch.empty((n, k, *shape), device=threshold.device)
        r = result.view(torch.int32)
        if self.tiles is not None:  # the members' rows by broadcasting, in the subtraction itself
            u = top.shape[1]
            tiled = (n, self.tiles, u, *shape)
            torch.sub(threshold.view(1, self.tiles, u, *ones), top.unsqueeze(1).expand(tiled), out=r.view(tiled))
        else:
            members = top if self.rows is None else torch.index_select(top, 1, self.rows, out=r)
            torch.sub(threshold.view(1, -1, *ones), members, out=r)
        r.bitwise_right_shift_(_K.s31).bitwise_and_(value.float().view(torch.int32).view(1, -1, *ones))
        return result if steps else result[0]


def keep_threshold(p: torch.Tensor) -> torch.Tensor:
    """The [K] int32 thresholds for Stream.kept: ceil(p * 2^24) - 1, as u = top24 / 2^24 >= p exactly when
    top24 >= ceil(p * 2^24), that is when top24 > the threshold."""
    return (torch.ceil(p.double() * (1 << 24)) - 1).to(torch.int32)


def uniform(seeds: torch.Tensor, step, stream: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Uniform [0, 1) floats of shape [K, *shape], row k a function of (seeds[k], step, stream, element) only."""
    return Stream(seeds, stream).uniform(step, tuple(shape))


def normal(seeds: torch.Tensor, step, stream: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Standard normals via Box-Muller over two independent uniform streams."""
    u1 = uniform(seeds, step, stream, shape).clamp_min(1.0 / (1 << 24))
    u2 = uniform(seeds, step, stream ^ 0x5BD1E995, shape)
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * torch.pi * u2)


class NormalStream:
    """normal()'s draws from two Streams made once, for draws repeated every step (weight noise): the same numbers
    as normal(seeds, step, stream, shape), without hashing the seeds and making the counters again each step."""

    def __init__(self, seeds: torch.Tensor, stream: int):
        self.u1, self.u2 = Stream(seeds, stream), Stream(seeds, stream ^ 0x5BD1E995)

    def normal(self, step, shape: tuple[int, ...]) -> torch.Tensor:
        u1 = self.u1.uniform(step, shape).clamp_min(1.0 / (1 << 24))
        u2 = self.u2.uniform(step, shape)
        return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * torch.pi * u2)


def _substream(stream: int, i: int) -> int:
    return (stream + 0x9E3779B9 * (i + 1)) & _MASK32


def log_gamma(seeds: torch.Tensor, step, stream: int, shape: tuple[int, ...], alpha: torch.Tensor, rounds: int = 8):
    """log of Gamma(alpha[k], 1) samples [K, *shape] by Marsaglia and Tsang's method (2000), vectorised.

    Rejection sampling needs a loop of unknown length; here every element gets `rounds` candidates at once and keeps
    the first accepted one. Each candidate is accepted with probability >= 0.95 (for the boosted shape >= 1), so
    all eight fail with probability < 1e-10; such an element falls back to the mode of the proposal. Shapes below
    1 are boosted to alpha + 1 and scaled by U^(1/alpha), in logs: for small alpha the sample itself underflows.
    """
    a = alpha.to(torch.float32).view(-1, *([1] * len(shape)))
    boost = a < 1
    d = torch.where(boost, a + 1, a) - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    out = d.expand(-1, *shape).clone()
    done = torch.zeros_like(out, dtype=torch.bool)
    for r in range(rounds):
        z = normal(seeds, step, _substream(stream, 2 * r), shape)
        u = uniform(seeds, step, _substream(stream, 2 * r + 1), shape).clamp_min(1.0 / (1 << 24))
        v = (1 + c * z) ** 3
        ok = (v > 0) & (torch.log(u) < 0.5 * z * z + d - d * v + d * torch.log(v.clamp_min(1e-30)))
        take = ok & ~done
        out = torch.where(take, d * v, out)
        done |= ok
    u = uniform(seeds, step, _substream(stream, 2 * rounds), shape).clamp_min(1.0 / (1 << 24))
    return torch.where(boost, torch.log(out) + torch.log(u) / a, torch.log(out))


def beta(seeds: torch.Tensor, step, stream: int, shape: tuple[int, ...], alpha: torch.Tensor) -> torch.Tensor:
    """Beta(alpha[k], alpha[k]) samples [K, *shape], as G1 / (G1 + G2) of two independent Gamma(alpha) draws."""
    g1 = log_gamma(seeds, step, _substream(stream, 1000), shape, alpha)
    g2 = log_gamma(seeds, step, _substream(stream, 2000), shape, alpha)
    return torch.sigmoid(g1 - g2)


def generator(seed: int, stream: str) -> torch.Generator:
    """A CPU generator for one member seed and one named purpose (initial weights, minibatch order)."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + stream_id(stream)) % (2**63 - 1))
