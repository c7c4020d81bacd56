"""The user's own nn.Module as a member population: K copies, their parameters stacked, run through torch.func.

Each member's module is built from its own seed (its initial weights depend on nothing else), every parameter and
buffer is stacked into one [K, ...] tensor, and one stateless copy of the module runs them all with
torch.func.vmap(functional_call). A module vmap cannot run (data-dependent Python control flow, `.item()`, an op
without a batching rule) runs member after member instead: decided once, at build, by a probe.

The module's own layers are where the architecture regularizers act (Regularizer.needs / MemberModel.offers):
  nn.Dropout (and Dropout1d/2d/3d)  becomes a keyed dropout whose p is the dropout regularizer's p in its members
        and 0 elsewhere: the p the user wrote is not used, so the baseline is the network without dropout, as for
        the MLP and the CNN.
  nn.BatchNorm1d/2d/3d  is switched on in the batch_norm regularizer's members and is the identity elsewhere
        (model.keep_norm=true: on in every member, and no batch_norm slot). Other normalizations stay as written.
  StochasticDepth (below)  drops residual branches with the stochastic_depth hint's rate, decayed linearly.
Their randomness is keyed by the member's seed, the step and the layer (regbench/rng.py's hash), so a member draws
the same masks in any population, batched or looped.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, vmap

from regbench import rng
from regbench.models.base import MemberModel, ModelHints
from regbench.models.layers import Context

log = logging.getLogger("regbench")

_MASK32 = 0xFFFFFFFF
_FELL_BACK: set[str] = set()  # modules whose fallback to a loop was logged
NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)
DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


# ---- keyed randomness: rng.Stream's hash, written without in-place ops or out= so that vmap can batch it ----


def _i32(x):
    """int64 values (a tensor or an int) as int32 with the same low 32 bits."""
    if isinstance(x, int):
        x &= _MASK32
        return x - (1 << 32) if x >= 1 << 31 else x
    return (((x + (1 << 31)) & _MASK32) - (1 << 31)).to(torch.int32)


def _fmix32(x: torch.Tensor) -> torch.Tensor:
    x = x ^ ((x >> 16) & 0xFFFF)
    x = x * _i32(0x85EBCA6B)
    x = x ^ ((x >> 13) & 0x7FFFF)
    x = x * _i32(0xC2B2AE35)
    return x ^ ((x >> 16) & 0xFFFF)


def keyed_uniform(seed: torch.Tensor, step, stream: int, shape: tuple[int, ...], device) -> torch.Tensor:
    """Uniform [0, 1) floats of `shape` for one member (seed a 0-d int64 tensor): the bits of
    rng.Stream(seeds, stream).uniform(step, shape)[k] for seeds[k] == seed (a test checks), as pure tensor
    arithmetic: under vmap `seed` is the member's own, and every member draws its own numbers."""
    base = _fmix32(_i32(seed.to(torch.int64) * 0x9E3779B1 + stream))
    if isinstance(step, int):
        key = _fmix32(base ^ _i32(step * 0x85EBCA77))
    else:  # a device counter
        key = _fmix32(base ^ _i32(step.to(torch.int64) * 0x85EBCA77))
    idx = torch.arange(math.prod(shape), device=device, dtype=torch.int32).view(shape) * _i32(0x27D4EB2F)
    top = (_fmix32(idx + key) >> 8) & 0xFFFFFF
    return top.to(torch.float32) * (1.0 / (1 << 24))


class _Keyed(nn.Module):
    """A layer drawing keyed random numbers: a drop probability `p` and the member's `seed` as buffers (stacked per
    member by FuncModel, which passes each member its own), the step as an attribute FuncModel sets before every
    forward (None: outside regbench, torch's own RNG)."""

    def __init__(self, p: float, stream: str):
        super().__init__()
        self.register_buffer("p", torch.tensor(float(p)), persistent=False)
        self.register_buffer("seed", torch.zeros((), dtype=torch.int64), persistent=False)
        self.stream = rng.stream_id(stream)
        self.step = None
        self.live = True  # False: p is 0 in every member, and the layer skips its draw

    def multiplier(self, shape: tuple[int, ...], x: torch.Tensor) -> torch.Tensor:
        """0 where dropped, 1/(1-p) where kept, of `shape` (broadcasting against x); exactly 1 where p is 0."""
        if self.step is None:
            u = torch.rand(shape, device=x.device)
        else:
            u = keyed_uniform(self.seed, self.step, self.stream, shape, x.device)
        return ((u >= self.p).to(x.dtype) / (1 - self.p)).to(x.dtype)


class KeyedDropout(_Keyed):
    """What FuncModel puts in place of nn.Dropout (element-wise) or Dropout1d/2d/3d (channel-wise)."""

    def __init__(self, channelwise: bool, stream: str):
        super().__init__(0.0, stream)
        self.channelwise = channelwise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not self.live:
            return x
        shape = tuple(x.shape[:2]) + (1,) * (x.dim() - 2) if self.channelwise else tuple(x.shape)
        return x * self.multiplier(shape, x)


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """An image batch [B, C, H, W] on the CPU in channels-last memory: oneDNN's convolutions then run without
    reordering their input (a ResNet-10 step 1.2-1.3x faster on one core; the same numbers up to rounding). Only for
    one member at a time: under vmap a convolution is grouped over the members, whose layout this does not help."""
    if x.dim() == 4 and x.device.type == "cpu":
        return x.contiguous(memory_format=torch.channels_last)
    return x


class StochasticDepth(nn.Module):
    """Stochastic depth (Huang et al., 2016), torchvision's "row" mode: in training each example's residual branch
    is zeroed with probability p and kept ones are scaled by 1/(1-p); the identity at evaluation. Use it as
    `x + self.drop_path(branch)`.

    Under regbench each member's p comes from the stochastic_depth regularizer (the l-th of L such modules gets
    p * l / L, the linear decay rule) and its randomness is keyed by the member's seed; a plain forward outside
    regbench uses `p` and torch's RNG."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.keyed = _Keyed(p, "stochastic_depth")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.keyed
        if not self.training or not k.live or (k.step is None and float(k.p) == 0.0):
            return x
        return x * k.multiplier((x.shape[0],) + (1,) * (x.dim() - 1), x)


class SlotNorm(nn.Module):
    """A batch norm the batch_norm regularizer switches: `on` per member (a stacked bool buffer); the identity in
    members where it is off."""

    def __init__(self, norm: nn.Module):
        super().__init__()
        self.norm = norm
        self.register_buffer("on", torch.tensor(True), persistent=False)
        self.live, self.all_on = True, True  # set by FuncModel from the members' switches

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.live:
            return x
        out = self.norm(x)
        return out if self.all_on else torch.where(self.on, out, x)


# ---- finding the slots in a user's module ----


def _replace(module: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(module.get_submodule(parent) if parent else module, child, new)


def install_slots(module: nn.Module) -> dict[str, list[str]]:
    """Put keyed dropout and switchable batch norm in place of the module's own layers, in place. Returns the
    slots' module names by kind: "dropout", "batch_norm", "residual"."""
    found: dict[str, list[str]] = {"dropout": [], "batch_norm": [], "residual": []}
    for name, m in list(module.named_modules()):
        if isinstance(m, DROPOUTS):
            _replace(module, name, KeyedDropout(type(m) is not nn.Dropout, f"dropout.{name}"))
            found["dropout"].append(name)
        elif isinstance(m, BATCH_NORMS):
            _replace(module, name, SlotNorm(m))
            found["batch_norm"].append(name)
        elif isinstance(m, StochasticDepth):
            m.keyed.stream = rng.stream_id(f"stochastic_depth.{name}")
            found["residual"].append(name)
    return found


def places(module: nn.Module, keep_norm: bool = False) -> frozenset[str]:
    """The slots (MemberModel.offers) a module's layers give: "dropout", "batch_norm" (unless kept on in every
    member), "residual" (StochasticDepth)."""
    found = set()
    for m in module.modules():
        if isinstance(m, DROPOUTS):
            found.add("dropout")
        elif isinstance(m, BATCH_NORMS) and not keep_norm:
            found.add("batch_norm")
        elif isinstance(m, StochasticDepth):
            found.add("residual")
    return frozenset(found)


def biases_into_norms(module: nn.Module, input_shape) -> list[str]:
    """The biases of the Linear and Conv layers whose output is, unchanged, the input of a batch norm: traced on a
    batch of 2 (a module's registration order need not be its forward's). Their exact gradient is zero where
    the norm is on, as it subtracts the batch mean."""
    names = {m: n for n, m in module.named_modules()}
    outputs: dict[int, tuple[str, torch.Tensor]] = {}  # the tensor kept, so that its id is not reused
    found: list[str] = []

    def after(m, inputs, out):
        outputs[id(out)] = (names[m], out)

    def before(m, inputs):
        src = outputs.get(id(inputs[0])) if inputs else None
        if src is not None and src[1] is inputs[0]:
            found.append(_join(src[0], "bias"))

    hooks = []
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)) and m.bias is not None:
            hooks.append(m.register_forward_hook(after))
        elif isinstance(m, BATCH_NORMS):
            hooks.append(m.register_forward_pre_hook(before))
    x = torch.randn((2, *input_shape), generator=torch.Generator().manual_seed(0))
    saved = {n: b.clone() for n, b in module.named_buffers()}  # the trace must not move running statistics
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            module.train()(x)
    except Exception:  # noqa: BLE001 - nothing found: the forward's own failure is reported where it runs
        pass
    finally:
        for h in hooks:
            h.remove()
        with torch.no_grad():
            for n, b in module.named_buffers():
                b.copy_(saved[n])
    return list(dict.fromkeys(found))


def _join(*parts: str) -> str:
    """A dotted name in a module; the root module's own name is ""."""
    return ".".join(p for p in parts if p)


def _attr(name: str) -> str:
    """A name in the user's module as an attribute of FuncModel (dots are not allowed there)."""
    return name.replace(".", "__")


# ---- the population ----


class FuncModel(MemberModel):
    """K members of the module `make_module()` builds, mapping [B, ...] inputs to [B, classes] logits."""

    graphable = False  # the engine captures no CUDA graph of it: untested there

    def __init__(
        self,
        make_module: Callable[[], nn.Module],
        input_shape,
        kind: str,
        n_classes: int,
        gens: list[torch.Generator],
        hints: ModelHints,
        keep_norm: bool = False,
        label: str = "model",
    ):
        super().__init__(len(gens))
        k, self.label, self.n_in = len(gens), label, len(input_shape)
        self.n_classes = n_classes
        members = []
        for g in gens:  # member k's initial weights from its own seed only
            seed = int(torch.randint(0, 2**62, (1,), generator=g))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                members.append(make_module())
        for m in members:
            self.slots = install_slots(m)
        base = members[0]
        feeding = biases_into_norms(base, input_shape) if self.slots["batch_norm"] else []

        # every parameter and buffer stacked [K, ...] under the user's names, dots as "__"
        self._param_names: list[tuple[str, str]] = []  # (name in the user's module, attribute here)
        self._buffer_names: list[tuple[str, str]] = []
        persistent = set(base.state_dict())
        params = [dict(m.named_parameters()) for m in members]
        buffers = [dict(m.named_buffers()) for m in members]
        for name in params[0]:
            stacked = torch.stack([p[name].detach() for p in params])
            self.register_parameter(_attr(name), nn.Parameter(stacked))
            self._param_names.append((name, _attr(name)))
        for name in buffers[0]:
            stacked = torch.stack([b[name] for b in buffers]).clone()
            self.register_buffer(_attr(name), stacked, persistent=name in persistent)
            self._buffer_names.append((name, _attr(name)))
        # a tensor shared by several layers (tied weights) is stacked once and passed under each of its names: the
        # meta copy below no longer shares it
        first: dict[int, str] = {}
        self._aliases = []
        for name, t in [*base.named_parameters(remove_duplicate=False), *base.named_buffers(remove_duplicate=False)]:
            if first.setdefault(id(t), name) != name:
                self._aliases.append((name, first[id(t)]))
        # the stateless copy functional_call runs, kept out of the module tree (not moved, not saved, no
        # parameters of its own) and on the meta device: every tensor it uses is passed in
        object.__setattr__(self, "base", base.to("meta"))

        # the slots' per-member switches
        self._seed_names = []
        norm_on = torch.ones(k, dtype=torch.bool) if keep_norm else hints.batch_norm.bool().cpu()
        with torch.no_grad():
            for name in self.slots["dropout"]:
                getattr(self, _attr(_join(name, "p"))).copy_(hints.dropout.float())
                self.base.get_submodule(name).live = bool((hints.dropout > 0).any())
                self._seed_names.append(_join(name, "seed"))
            depth = len(self.slots["residual"])
            for i, name in enumerate(self.slots["residual"], 1):  # Huang et al.'s linear decay: p_l = p * l / L
                getattr(self, _attr(_join(name, "keyed", "p"))).copy_(hints.stochastic_depth.float() * i / depth)
                self.base.get_submodule(name).keyed.live = bool((hints.stochastic_depth > 0).any())
                self._seed_names.append(_join(name, "keyed", "seed"))
            for name in self.slots["batch_norm"]:
                getattr(self, _attr(_join(name, "on"))).copy_(norm_on)
                slot = self.base.get_submodule(name)
                slot.live, slot.all_on = bool(norm_on.any()), bool(norm_on.all())
        self._keyed = [m for m in self.base.modules() if isinstance(m, _Keyed)]

        # which parameters the regularizers see: weights (penalised), biases, normalization parameters
        owners = dict(self.base.named_modules())
        for name, attr in self._param_names:
            p = getattr(self, attr)
            if isinstance(owners[name.rpartition(".")[0]], NORMS):
                self.norms.append(p)
            elif p.dim() >= 3:  # a tensor of two or more dimensions per member: a linear or conv weight
                self.weights.append(p)
            else:
                self.biases.append(p)
        self.register_buffer("_norm_on", norm_on.clone(), persistent=False)
        for bias in feeding if norm_on.any() else []:
            self._zero_grad_where_on(getattr(self, _attr(bias)))
        self.mode = "batched" if k == 1 else self._probe(input_shape)
        self._ran: set[bool] = set()  # modes (train, eval) vmap has run real data in

    def _zero_grad_where_on(self, bias: nn.Parameter) -> None:
        """Zero the gradient of a bias feeding a batch norm, in members where the norm is on: the norm subtracts
        the batch mean, so the exact gradient is zero; the computed one is rounding noise that Adam would turn
        into lr-sized steps, different with the population's size (as MemberBatchNorm.follows)."""
        k = self.k
        bias.register_hook(lambda g: g.reshape(k, -1).masked_fill(self._norm_on.view(-1, 1), 0.0).view_as(g))

    # ---- forward ----

    def _state(self, ctx: Context) -> tuple[dict, dict]:
        params = {name: getattr(self, attr) for name, attr in self._param_names}
        buffers = {name: getattr(self, attr) for name, attr in self._buffer_names}
        for name in self._seed_names:
            buffers[name] = ctx.seeds
        for alias, name in self._aliases:
            (params if name in params else buffers)[alias] = params.get(name, buffers.get(name))
        return params, buffers

    def forward(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        """[K, B, ...] (a minibatch per member) or a shared [N, ...] (evaluation) -> [K, B or N, classes]."""
        for m in self._keyed:
            m.step = ctx.step
        self.base.train(ctx.train)
        if self.mode == "loop" or ctx.train in self._ran:
            return self._run(x, *self._state(ctx), self.mode)
        try:  # the first batched call in each mode: where vmap fails on real data after all, loop instead
            out = self._run(x, *self._state(ctx), "batched")
        except Exception as e:  # noqa: BLE001
            self.mode = self._fall_back(e)
            return self._run(x, *self._state(ctx), "loop")
        self._ran.add(ctx.train)
        return out

    def _run(self, x, params, buffers, mode: str) -> torch.Tensor:
        shared = x.dim() == self.n_in + 1
        base = self.base

        def call(p, b, xi):
            return functional_call(base, (p, b), (xi,))

        if mode == "loop" or self.k == 1:  # one member at a time; a one-member population costs a plain module's
            outs = []
            for j in range(self.k):
                p = {n: t[j] for n, t in params.items()}
                b = {n: t[j] for n, t in buffers.items()}
                outs.append(call(p, b, _channels_last(x if shared else x[j])))
            return torch.stack(outs)
        return vmap(call, in_dims=(0, 0, None if shared else 0))(params, buffers, x)

    def _probe(self, input_shape) -> str:
        """ "batched" where vmap runs the module in training and evaluation, else "loop" (logged once per build).
        On a two-member copy of the state: the real one (running statistics) stays untouched."""
        x = torch.randn((2, 2, *input_shape), generator=torch.Generator().manual_seed(0))
        seeds = torch.zeros(2, dtype=torch.int64)
        params, buffers = self._state(Context(seeds=seeds))
        copies: dict[int, torch.Tensor] = {}  # one copy per tensor: tied names stay tied
        params = {n: copies.setdefault(id(t), t[:2].detach().clone()) for n, t in params.items()}
        buffers = {n: copies.setdefault(id(t), t[:2].clone()) for n, t in buffers.items()}
        old_k, self.k = self.k, 2
        try:
            for train in (True, False):
                for m in self._keyed:
                    m.step = 0
                self.base.train(train)
                with torch.no_grad():
                    self._run(x if train else x[0], params, buffers, "batched")
            return "batched"
        except Exception as e:  # noqa: BLE001 - any failure of vmap means: run the members one by one
            return self._fall_back(e)
        finally:
            self.k = old_k

    def _fall_back(self, e: Exception) -> str:
        """ "loop", said once per module and process (a sweep builds many populations of it)."""
        why = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        if self.label not in _FELL_BACK:
            _FELL_BACK.add(self.label)
            log.warning("%s: torch.func.vmap cannot run this module (%s); its members run one after another",
                        self.label, why)  # fmt: skip
        return "loop"

    # ---- views the regularizers use ----

    def weight_rows(self, t: torch.Tensor) -> torch.Tensor:
        """[K, out units, fan_in]: PyTorch's weight layouts put the output units first (Linear, ConvNd)."""
        return t.view(self.k, t.shape[1], -1)

    def member_tensors(self) -> list[torch.Tensor]:
        """Every parameter and every buffer the user's module holds per member (running statistics)."""
        return list(self.parameters()) + [getattr(self, attr) for _, attr in self._buffer_names]
