"""trainer.batching: batched, looped or chunked training gives every member the same numbers; auto measures once per
machine (cached, a corrupt cache rewritten) and chunked runs checkpoint and resume per chunk."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from regbench import data, paths, sweep
from regbench.config import validate_config
from regbench.results import store
from regbench.train import batching, checkpoint
from regbench.train.population import members_for

from .conftest import TINY, Interrupt, StopAt


@pytest.fixture
def auto(monkeypatch, tmp_path):
    """auto measuring for real (the suite pins it to batched), into a cache of this test's own."""
    monkeypatch.delenv(batching.ENV)
    monkeypatch.setenv("REGBENCH_CACHE", str(tmp_path / "cache"))
    batching._logged.clear()


def _setup(compose_cfg, *overrides):
    spec = validate_config(compose_cfg(*TINY, *overrides))
    return spec, data.load(spec.dataset), members_for(spec)


def _train(spec, splits, members, mode, *args):
    spec.trainer.batching = mode
    return batching.train_members(splits, spec.model, spec.trainer, members, "cpu", *args)


@pytest.mark.parametrize("model", ["model=mlp", "model=cnn"])
def test_loop_and_batched_give_every_member_the_same_numbers(compose_cfg, model):
    # dropout: per-member noise streams; l2: a penalty gradient; the MLP's hand-written step against a single member's
    spec, splits, members = _setup(compose_cfg, model, "regularizers=[l2,dropout]", "trainer.steps=12")
    batched = _train(spec, splits, members, "batched")
    loop = _train(spec, splits, members, "loop")
    assert len(loop.members) == len(members) == 4
    assert [(m.arm, m.seed) for m in loop.members] == [(m.arm, m.seed) for m in members]
    torch.testing.assert_close(loop.final, batched.final, rtol=1e-4, atol=1e-4)
    assert [(r["member"], r["epoch"]) for r in loop.history] != []
    assert sorted((r["member"], r["epoch"]) for r in loop.history) == sorted(
        (r["member"], r["epoch"]) for r in batched.history
    )
    # the members differ from each other: a mix-up of members between chunks would show
    assert not torch.allclose(batched.final[0], batched.final[2])


def test_auto_measures_once_then_reads_the_cache(compose_cfg, auto, monkeypatch, caplog):
    spec, splits, members = _setup(compose_cfg, "trainer.steps=2")
    calls = []

    def fake(splits, model_cfg, trainer, members, device, sizes):
        calls.extend(sizes)
        return {c: {4: 3.0, 2: 1.0, 1: 2.0}[c] for c in sizes}  # the middle size fastest per member-step

    monkeypatch.setattr(batching, "measure", fake)
    with caplog.at_level(logging.INFO, logger="regbench"):
        assert batching.chunk_size(splits, spec.model, spec.trainer, members, "cpu") == 2
    assert sorted(calls) == [1, 2, 4]
    assert "4 members in chunks of 2 (chunked)" in caplog.text
    cached = json.loads((paths.cache_home() / batching.CACHE).read_text())
    (entry,) = cached["entries"].values()
    assert entry["chunk"] == 2 and entry["key"]["members"] == 4 and entry["key"]["threads"] == torch.get_num_threads()

    calls.clear()
    assert batching.chunk_size(splits, spec.model, spec.trainer, members, "cpu") == 2
    assert calls == []  # from the cache
    # another member count is another question: measured anew, beside the first answer
    assert batching.chunk_size(splits, spec.model, spec.trainer, members[:2], "cpu") in (1, 2)
    assert sorted(calls) == [1, 2]
    assert len(json.loads((paths.cache_home() / batching.CACHE).read_text())["entries"]) == 2


def test_auto_survives_a_corrupt_cache_and_rewrites_it(compose_cfg, auto, monkeypatch):
    spec, splits, members = _setup(compose_cfg, "trainer.steps=2")
    monkeypatch.setattr(batching, "measure", lambda *a: {c: {4: 1.0, 2: 2.0, 1: 3.0}[c] for c in a[-1]})
    path = paths.cache_home() / batching.CACHE
    for garbage in ["{not json", '{"format": "regbench.batching/1", "entries": {"x": 3}}', "[]"]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(garbage)
        assert batching.chunk_size(splits, spec.model, spec.trainer, members, "cpu") == 4
        assert json.loads(path.read_text())["format"] == batching.FORMAT
    # an entry whose chunk does not fit (hand-edited) is measured again, not trusted
    data_ = json.loads(path.read_text())
    for entry in data_["entries"].values():
        entry["chunk"] = 99
    path.write_text(json.dumps(data_))
    assert batching.chunk_size(splits, spec.model, spec.trainer, members, "cpu") == 4


def test_auto_trains_in_the_measured_chunks_and_the_suite_pin_holds(compose_cfg, monkeypatch, tmp_path):
    spec, splits, members = _setup(compose_cfg, "trainer.steps=2")
    assert batching.chunk_size(splits, spec.model, spec.trainer, members, "cpu") == 4  # conftest: batched
    monkeypatch.setenv(batching.ENV, "loop")
    seen = []
    real = batching.train_population
    monkeypatch.setattr(
        batching, "train_population", lambda s, m, t, ms, *a: seen.append(len(ms)) or real(s, m, t, ms, *a)
    )
    pop = batching.train_members(splits, spec.model, spec.trainer, members, "cpu")
    assert seen == [1, 1, 1, 1] and len(pop.members) == 4 and pop.final.shape == (4, 6)


def test_a_chunked_run_resumes_each_chunk_from_its_own_checkpoint(compose_cfg, tmp_path):
    spec, splits, members = _setup(compose_cfg, "trainer.epochs=3", "regularizers=[l2,dropout]")
    whole = _train(spec, splits, members, "loop")
    ck = checkpoint.Checkpointing(tmp_path / store.CHECKPOINT, every=1, key="run")
    with pytest.raises(Interrupt):  # in the first chunk (member 0), after its epoch-1 checkpoint
        _train(spec, splits, members, "loop", StopAt(2), ck)
    assert [p.name for p in store.checkpoints(tmp_path) if p.exists()] == ["checkpoint.members-0-1.pt"]
    assert checkpoint.load(batching.chunk_checkpoint(ck, 0, 1, 4), "cpu")["epoch"] == 1
    # a different chunking never loads another chunk's state
    assert checkpoint.load(batching.chunk_checkpoint(ck, 0, 2, 4), "cpu") is None
    resumed = _train(spec, splits, members, "loop", None, ck)
    assert torch.equal(resumed.final, whole.final) and resumed.history == whole.history
    assert len([p for p in store.checkpoints(tmp_path) if p.exists()]) == 4  # one a chunk, the job removes them


@pytest.mark.slow
def test_auto_measures_the_mlp_batched_faster_than_a_loop(compose_cfg, auto):
    # the MLP's hand-written batched step is several times a loop of single members: auto must see it
    spec, splits, members = _setup(compose_cfg, "trainer.seeds=8", "regularizers=[l2,dropout]")
    assert batching.chunk_size(splits, spec.model, spec.trainer, members, "cpu") == len(members)


def test_auto_stays_batched_under_compile_without_measuring(compose_cfg, auto, monkeypatch):
    spec, splits, members = _setup(compose_cfg, "trainer.steps=2", "trainer.compile=true")
    monkeypatch.setattr(batching, "measure", lambda *a: pytest.fail("measured"))
    assert batching.chunk_size(splits, spec.model, spec.trainer, members, "cpu") == len(members)


def test_a_size_far_slower_per_member_step_sits_out_the_later_rounds(compose_cfg, monkeypatch):
    """The measurement stops timing a chunk size once it is more than DROP slower per member-step than the best
    (it cannot win), and still times the near ones every round; the choice is the one all rounds would give."""
    import time

    spec, splits, members = _setup(compose_cfg, "trainer.seeds=4")  # 4 members: sizes 4, 2, 1
    per_member = {4: 0.001, 2: 0.0011, 1: 0.004}  # seconds a member-step: the loop 4x slower
    timed = []
    real = batching._step

    def step(run, fn, order):
        timed.append(run.k)
        real(run, fn, order)
        end = time.perf_counter() + per_member[run.k] * run.k
        while time.perf_counter() < end:
            pass

    monkeypatch.setattr(batching, "_step", step)
    monkeypatch.setattr(batching, "SECONDS", 0.0)  # one timed step a round
    best = batching.measure(splits, spec.model, spec.trainer, members, "cpu", [4, 2, 1])
    rounds = {size: timed.count(size) - batching.WARMUP for size in (4, 2, 1)}
    assert rounds == {4: batching.ROUNDS, 2: batching.ROUNDS, 1: 1}
    assert batching.fastest(best) == 4


def test_auto_keeps_the_larger_chunk_unless_a_smaller_one_is_clearly_faster():
    assert batching.fastest({8: 1.0, 3: 0.97, 1: 0.99}) == 8  # within the margin: noise, not a reason to loop
    assert batching.fastest({8: 1.0, 3: 0.9, 1: 0.93}) == 3
    assert batching.fastest({8: 1.0, 3: 0.9, 1: 0.5}) == 1


def test_auto_with_a_cache_it_cannot_write_still_chooses(compose_cfg, auto, monkeypatch):
    spec, splits, members = _setup(compose_cfg, "trainer.steps=2")
    monkeypatch.setattr(batching, "measure", lambda *a: {c: {4: 2.0, 2: 2.0, 1: 1.0}[c] for c in a[-1]})

    def read_only(path, content):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(batching, "atomic_write", read_only)
    assert batching.chunk_size(splits, spec.model, spec.trainer, members, "cpu") == 1
    assert not (paths.cache_home() / batching.CACHE).exists()


def test_a_looped_sweep_gives_each_job_the_numbers_of_a_batched_one(compose_cfg, monkeypatch):
    def records(mode):
        jobs = []
        for i, regs in enumerate(["regularizers=[l1]", "regularizers=[dropout]"]):
            cfg = compose_cfg(*TINY, regs, "trainer.steps=8", f"trainer.batching={mode}")
            jobs.append(sweep.Job(i, cfg, validate_config(cfg)))
        return dict(sweep.train_jobs(jobs, budget_bytes=1 << 30))

    sizes = []
    real = batching.train_population
    monkeypatch.setattr(
        batching, "train_population", lambda s, m, t, ms, *a: sizes.append(len(ms)) or real(s, m, t, ms, *a)
    )
    batched, looped = records("batched"), records("loop")
    assert sizes == [6] + [1] * 6  # two shared baselines, two l1 and two dropout members
    for n in (0, 1):
        assert [(m["arm"], m["seed"]) for m in looped[n]["members"]] == [
            (m["arm"], m["seed"]) for m in batched[n]["members"]
        ]
        for a, b in zip(looped[n]["members"], batched[n]["members"]):
            assert a["final"] == pytest.approx(b["final"], rel=1e-4, abs=1e-4)
