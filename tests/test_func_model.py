"""model=torch: the user's own nn.Module as a member population (models/func.py, models/torch_model.py)."""

from __future__ import annotations

import json
import logging
import re
import shlex
from pathlib import Path

import pytest
import torch
from torch import nn

from regbench import data, rng, sweep
from regbench.config import validate_config
from regbench.models import func
from regbench.models.base import ModelHints
from regbench.models.examples import ResidualMLP
from regbench.models.func import FuncModel, StochasticDepth, keyed_uniform
from regbench.models.layers import Context
from regbench.train import checkpoint
from regbench.train.engine import train_population
from regbench.train.population import members_for

from .conftest import TINY, Interrupt, StopAt, assert_trained_alone_equals_together, run_cli

CONV = ["model=torch", "model.target=regbench.models.examples:SmallConvNet", "+model.kwargs.channels=4"]


DIGITS = ["dataset=digits", "trainer.epochs=1", "trainer.seeds=2", "trainer.progress=off"]


def _spec(compose_cfg, *overrides):
    small = DIGITS if "dataset=digits" in overrides else TINY
    return validate_config(compose_cfg(*small, *overrides))


def _gens(seeds):
    return [rng.generator(s, "init") for s in seeds]


def _hints(k, **kw):
    h = ModelHints.plain(k)
    for name, v in kw.items():
        setattr(h, name, torch.tensor(v))
    return h


def _model(make, seeds, input_shape=(10,), **hints):
    return FuncModel(make, input_shape, "table", 3, _gens(seeds), _hints(len(seeds), **hints))


def _ctx(seeds, train=True, step=0):
    return Context(seeds=torch.tensor(seeds), step=step, train=train)


def _mlp(dropout=False, bn=False):
    def make():
        layers = [nn.Linear(10, 16)] + ([nn.BatchNorm1d(16)] if bn else []) + [nn.ReLU()]
        return nn.Sequential(*layers, *([nn.Dropout(0.9)] if dropout else []), nn.Linear(16, 3))

    return make


# ---- a member in a population equals the member alone ----


@pytest.mark.parametrize("data_args", [["dataset=digits", "trainer.batch_size=200"], ["dataset=mnist1d"]])
def test_member_in_population_matches_member_trained_alone(compose_cfg, data_args):
    spec = _spec(compose_cfg, *data_args, *CONV, "trainer.epochs=1", "regularizers=[dropout,batch_norm,l2]")
    splits = data.load(spec.dataset)
    members = members_for(spec)  # 2 baseline + 2 regularized
    together = assert_trained_alone_equals_together(splits, spec, members, (1, 2))
    assert not torch.allclose(together.final[0], together.final[2])  # the regularized arm differs


def test_members_start_from_their_own_seed_and_the_module_own_initialization():
    a, b = _model(_mlp(), [3, 4]), _model(_mlp(), [4])
    torch.testing.assert_close(a.weights[0][1], b.weights[0][0], rtol=0, atol=0)
    assert not torch.equal(a.weights[0][0], a.weights[0][1])
    assert [tuple(w.shape) for w in a.weights] == [(2, 16, 10), (2, 3, 16)] and len(a.biases) == 2
    assert a.weight_rows(a.weights[0]).shape == (2, 16, 10)


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(10, 10), nn.Linear(10, 10)
        self.b.weight = self.a.weight

    def forward(self, x):
        return self.b(self.a(x).relu())


@pytest.mark.parametrize("mode", ["batched", "loop"])
def test_tied_weights_stay_one_tensor_per_member(mode):
    model = _model(Tied, [1, 2])
    model.mode = mode
    assert [n for n, _ in model.named_parameters()] == ["a__weight", "a__bias", "b__bias"]
    x = torch.randn(2, 4, 10)
    out = model(x, _ctx([1, 2]))
    w = model.a__weight.detach().clone().requires_grad_()
    a, b = model.a__bias.detach(), model.b__bias.detach()
    ref = torch.stack([(x[k] @ w[k].T + a[k]).relu() @ w[k].T + b[k] for k in range(2)])
    torch.testing.assert_close(out, ref)
    out.sum().backward()
    ref.sum().backward()
    torch.testing.assert_close(model.a__weight.grad, w.grad)  # one gradient, from both uses


def test_plain_path_and_a_checkpoint_resume_train_the_same_members(compose_cfg, tmp_path):
    args = [*CONV, "regularizers=[dropout,batch_norm,max_norm]", "trainer.epochs=3"]
    spec = _spec(compose_cfg, *args)
    splits, members = data.load(spec.dataset), members_for(spec)
    whole = train_population(splits, spec.model, spec.trainer, members, "cpu")
    plain = _spec(compose_cfg, *args, "trainer.fast=false")
    torch.testing.assert_close(train_population(splits, plain.model, plain.trainer, members, "cpu").final, whole.final)
    ck = checkpoint.Checkpointing(tmp_path / "checkpoint.pt", every=1, key="run")
    with pytest.raises(Interrupt):
        train_population(splits, spec.model, spec.trainer, members, "cpu", StopAt(2), ck)
    resumed = train_population(splits, spec.model, spec.trainer, members, "cpu", None, ck)
    assert resumed.history == whole.history and torch.equal(resumed.final, whole.final)
    assert sweep.member_bytes(spec, splits) > 0


# ---- dropout slot ----


def test_keyed_uniform_draws_the_bits_of_the_rng_streams():
    seeds = torch.tensor([5, 2**40 + 3])
    ref = rng.Stream(seeds, rng.stream_id("dropout.x")).uniform(7, (4, 6))
    for k in range(2):
        got = keyed_uniform(seeds[k], 7, rng.stream_id("dropout.x"), (4, 6), "cpu")
        torch.testing.assert_close(got, ref[k], rtol=0, atol=0)


def test_dropout_slot_takes_the_regularizer_p_keyed_by_seed_identity_at_eval():
    x = torch.randn(3, 64, 10)
    model = _model(_mlp(dropout=True), [5, 6, 7], dropout=[0.0, 0.5, 0.5])
    plain = _model(_mlp(), [5, 6, 7])  # the same weights without the layer (no parameters of its own)
    with torch.no_grad():
        out = model(x, _ctx([5, 6, 7]))
        ref = plain(x, _ctx([5, 6, 7]))
        torch.testing.assert_close(model(x[0], _ctx([5, 6, 7], train=False)), plain(x[0], _ctx([5, 6, 7], False)))
        torch.testing.assert_close(out[0], ref[0], rtol=0, atol=0)  # p = 0: the user's 0.9 is not used
        assert not torch.allclose(out[1], ref[1])
        # member of seed 7 alone, and in another population: the same mask
        alone = _model(_mlp(dropout=True), [7], dropout=[0.5])(x[2:], _ctx([7]))
        other = _model(_mlp(dropout=True), [7, 1], dropout=[0.5, 0.2])(x[[2, 0]], _ctx([7, 1]))
        torch.testing.assert_close(alone[0], out[2], rtol=0, atol=1e-6)
        torch.testing.assert_close(other[0], out[2], rtol=0, atol=1e-6)
        assert not torch.allclose(model(x, _ctx([5, 6, 7], step=1))[2], out[2])  # a new mask every step


def test_the_loop_fallback_gives_the_numbers_of_the_batched_run():
    x = torch.randn(3, 32, 10)
    model = _model(_mlp(dropout=True, bn=True), [5, 6, 7], dropout=[0.0, 0.5, 0.5], batch_norm=[False, True, True])
    assert model.mode == "batched"
    batched = model(x, _ctx([5, 6, 7]))
    stats = model.state_dict()["1__norm__running_mean"].clone()
    looped_model = _model(_mlp(dropout=True, bn=True), [5, 6, 7], dropout=[0.0, 0.5, 0.5], batch_norm=[0, 1, 1])
    looped_model.mode = "loop"
    torch.testing.assert_close(looped_model(x, _ctx([5, 6, 7])), batched, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(looped_model.state_dict()["1__norm__running_mean"], stats)


class LateBranch(nn.Module):
    """Data-dependent control flow only for batches above 2: the build's probe passes, real data do not."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(10, 3)

    def forward(self, x):
        h = self.a(x)
        if x.shape[0] > 2 and h.sum() > 0:
            h = h * 1.0
        return h


def test_a_module_vmap_fails_on_at_its_first_real_batch_runs_member_by_member(monkeypatch, caplog):
    monkeypatch.setattr(func, "_FELL_BACK", set())
    model = _model(LateBranch, [1, 2])
    assert model.mode == "batched"
    x = torch.randn(2, 8, 10)
    with caplog.at_level(logging.WARNING, logger="regbench"):
        out = model(x, _ctx([1, 2]))
        _model(LateBranch, [1, 2])(x, _ctx([1, 2]))  # said once per module
    assert model.mode == "loop" and len([r for r in caplog.records if "vmap" in r.getMessage()]) == 1
    ref = torch.stack([x[k] @ model.a__weight[k].T + model.a__bias[k] for k in range(2)])
    torch.testing.assert_close(out, ref)


def test_a_module_vmap_cannot_run_trains_member_by_member_and_equals_the_member_alone(compose_cfg, caplog, monkeypatch):
    monkeypatch.setattr(func, "_FELL_BACK", set())
    args = ["model=torch", "model.target=tests.byo_model:Branchy", "regularizers=[dropout]", "trainer.epochs=1"]
    spec = _spec(compose_cfg, *args)
    splits, members = data.load(spec.dataset), members_for(spec)
    with caplog.at_level(logging.WARNING, logger="regbench"):
        together = train_population(splits, spec.model, spec.trainer, members, "cpu")
    (line,) = [r.getMessage() for r in caplog.records if "vmap" in r.getMessage()]
    assert line.startswith("model.target=tests.byo_model:Branchy: torch.func.vmap cannot run this module")
    alone = train_population(splits, spec.model, spec.trainer, [members[3]], "cpu")
    torch.testing.assert_close(alone.final[0], together.final[3], rtol=1e-5, atol=1e-5)


# ---- batch norm slot ----


def test_batch_norm_slot_is_the_network_without_it_where_off_and_on_everywhere_with_keep_norm():
    x = torch.randn(2, 32, 10)
    model = _model(_mlp(bn=True), [5, 6], batch_norm=[False, True])
    plain = _model(_mlp(), [5, 6])
    out, ref = model(x, _ctx([5, 6])), plain(x, _ctx([5, 6]))
    torch.testing.assert_close(out[0], ref[0], rtol=0, atol=0)
    assert not torch.allclose(out[1], ref[1])
    assert len(model.norms) == 2 and model.norms[0].shape == (2, 16)
    out.sum().backward()  # the bias feeding an active norm gets no gradient (its exact gradient is zero)
    bias = model.biases[0]
    assert bias.grad[1].abs().max() == 0 and bias.grad[0].abs().max() > 0

    # traced, not guessed from the registration order: a bias behind a ReLU keeps its gradient
    def after_relu():
        return nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.BatchNorm1d(16), nn.Linear(16, 3))

    relu_first = _model(after_relu, [5, 6], batch_norm=[False, True])
    relu_first(x, _ctx([5, 6])).sum().backward()
    assert relu_first.biases[0].grad[1].abs().max() > 0
    kept = FuncModel(_mlp(bn=True), (10,), "table", 3, _gens([5, 6]), _hints(2), keep_norm=True)
    torch.testing.assert_close(kept(x, _ctx([5, 6]))[1], out[1])  # on where the regularizer is off
    running = kept.state_dict()["1__norm__running_mean"]
    assert running.shape == (2, 16) and not torch.equal(running[0], running[1])  # per member statistics


# ---- stochastic depth ----


def test_stochastic_depth_decays_linearly_drops_rows_and_is_the_identity_at_eval():
    model = FuncModel(
        lambda: ResidualMLP(10, 3, width=8, blocks=4),
        (10,),
        "table",
        3,
        _gens([1, 2]),
        _hints(2, stochastic_depth=[0.0, 0.8]),
    )
    ps = [getattr(model, f"drop_paths__{i}__keyed__p") for i in range(4)]
    torch.testing.assert_close(torch.stack(ps)[:, 1], torch.tensor([0.2, 0.4, 0.6, 0.8]))
    assert all(p[0] == 0 for p in ps)

    sd = StochasticDepth(0.3)  # outside regbench: torch's RNG
    x = torch.ones(20000, 4)
    assert sd.eval()(x) is x
    y = sd.train()(x)
    dropped = (y[:, 0] == 0).float().mean().item()
    assert abs(dropped - 0.3) < 0.02 and torch.equal(y[:, 0:1].expand_as(y), y)  # whole rows
    torch.testing.assert_close(y[y > 0], torch.full_like(y[y > 0], 1 / 0.7))

    keyed = FuncModel(
        lambda: StochasticDepth(), (4,), "table", 4, _gens([1, 2]), _hints(2, stochastic_depth=[0.0, 0.3])
    )
    out = keyed(torch.ones(2, 20000, 4), _ctx([1, 2]))
    assert torch.equal(out[0], torch.ones(20000, 4))
    assert abs((out[1, :, 0] == 0).float().mean().item() - 0.3) < 0.02


# ---- refusals, before anything runs ----


@pytest.fixture
def invoke(invoke):
    """conftest's in-process `regbench run`, with model=torch and a small dataset."""
    return lambda *args: invoke("model=torch", "dataset.num_samples=600", *args)


REFUSALS = [
    ([], "model.target: missing; name your nn.Module as model.target=package.module:Class"),
    (["model.target=nowhere.at_all:Net"], "model.target='nowhere.at_all:Net': cannot import nowhere.at_all "),
    (["model.target=tests.byo_model"], "model.target='tests.byo_model': must be package.module:Class"),
    (["model.target=tests.byo_model:Nope"], "model.target='tests.byo_model:Nope': tests.byo_model has no Nope"),
    (["model.target=tests.byo_model:NotAModule"], "model.target='tests.byo_model:NotAModule': not an nn.Module"),
    (
        ["model.target=tests.byo_model:Broken"],
        "model.target=tests.byo_model:Broken: the constructor failed (ValueError: no such layer size)",
    ),
    (
        ["model.target=tests.byo_model:WrongShape"],
        "model.target=tests.byo_model:WrongShape: returns [2, 1, 10] for a batch of shape [2, 40]; needs [2, 10]",
    ),
    (
        ["model.target=tests.byo_model:Plain", "regularizers=[dropout]"],
        "regularizers.dropout: model=torch (model.target=tests.byo_model:Plain) has no layers that drop",
    ),
    (
        ["model.target=tests.byo_model:Plain", "regularizers=[batch_norm]"],
        "regularizers.batch_norm: model=torch (model.target=tests.byo_model:Plain) has no normalization layers",
    ),
    (
        [*CONV[1:], "model.keep_norm=true", "regularizers=[batch_norm]"],
        "regularizers.batch_norm: model=torch (model.target=regbench.models.examples:SmallConvNet) has no norm",
    ),
    (
        ["model.target=tests.byo_model:Plain", "regularizers.dropout.input_p=0.1"],
        "regularizers.dropout: model=torch (model.target=tests.byo_model:Plain) has no layers that drop",
    ),
    (["model.target=tests.byo_model:Plain", "model.kwargs=3"], "model.kwargs=3: must be a mapping"),
]


@pytest.mark.parametrize("args,message", REFUSALS, ids=[" ".join(a) or "none" for a, _ in REFUSALS])
def test_a_module_the_engine_cannot_train_is_refused_in_one_line(invoke, args, message):
    r = invoke(*args)
    assert r.exit_code == 2, r.stderr
    assert r.stderr.startswith(f"regbench: error: {message}") and r.stderr.count("\n") == 1


# ---- bring your own model: the README's example, through the real CLI ----

README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_example() -> tuple[str, list[str]]:
    """The README's "Your own model" example: the module file's text and the command's overrides."""
    text = README.read_text().split("## Your own model", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    command = re.search(r"```bash\n(regbench run .*?)\n```", text, re.S).group(1)
    return code, [a.strip("'") for a in shlex.split(command)[2:]]


BYO, README_ARGS = _readme_example()


def test_bring_your_own_model_through_the_cli(tmp_path):
    (tmp_path / "my_models.py").write_text(BYO)
    assert "model.target=my_models:TinyNet" in README_ARGS and "+model.kwargs.hidden=64" in README_ARGS
    r = run_cli("run", *README_ARGS, *DIGITS[1:], cwd=tmp_path)  # the README's command, on a small budget
    assert r.returncode == 0, r.stderr
    (path,) = tmp_path.glob("results/jobs/*/result.json")
    record = json.loads(path.read_text())
    assert record["job"]["model"] == "torch"
    assert record["provenance"]["config"]["model"]["kwargs"] == {"hidden": 64}
    assert [m["arm"] for m in record["members"]] == ["baseline"] * 2 + ["dropout+l2"] * 2
    assert all(m["final"]["train_acc"] > 0.3 for m in record["members"])
    elsewhere = tmp_path / "typo"
    elsewhere.mkdir()
    (elsewhere / "my_models.py").write_text(BYO)
    r = run_cli("run", *DIGITS, "model=torch", "model.target=my_models:TinyNett", cwd=elsewhere)
    assert (r.returncode, r.stderr) == (
        2,
        "regbench: error: model.target='my_models:TinyNett': my_models has no TinyNett\n",
    )
    assert list(elsewhere.iterdir()) == [elsewhere / "my_models.py"]


class _Recorder(nn.Module):
    """A small conv net that notes the memory format its input arrives in."""

    seen: list = []

    def __init__(self):
        super().__init__()
        self.conv, self.head = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4, 3)

    def forward(self, x):
        _Recorder.seen.append(x.is_contiguous(memory_format=torch.channels_last))
        return self.head(self.conv(x).relu().mean(dim=(2, 3)))


def test_one_member_at_a_time_feeds_images_channels_last_with_the_same_outputs():
    _Recorder.seen.clear()
    model = FuncModel(_Recorder, (3, 6, 6), "image", 3, _gens([0]), _hints(1))
    x = torch.randn(1, 5, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    out = model(x, Context(seeds=torch.zeros(1, dtype=torch.int64), train=True))
    assert _Recorder.seen[-1] is True  # oneDNN's convolutions run on channels-last input without a reorder
    torch.manual_seed(0)
    plain = _Recorder()
    with torch.no_grad():
        for name, t in plain.named_parameters():
            t.copy_(getattr(model, name.replace(".", "__"))[0])
    torch.testing.assert_close(out[0], plain(x[0].contiguous()), rtol=1e-5, atol=1e-6)
