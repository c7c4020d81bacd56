"""Denormal floats flushed to zero on every thread of a CPU training, and only there (train/denormals.py)."""

from __future__ import annotations

import logging

import pytest
import torch

from regbench import data
from regbench.config import validate_config
from regbench.train import denormals
from regbench.train.engine import train_population
from regbench.train.population import members_for

from .conftest import TINY


def denormal_share(threads: int) -> torch.Tensor:
    """Per thread's share of a kernel split across the pool: the fraction of a denormal input that came out
    nonzero (its bits, as integers: a flushing thread would read a float denormal as zero)."""
    x = torch.full((threads, 1 << 17), 0x116C2, dtype=torch.int32).view(torch.float32)  # ~1.6e-40
    return (x * 1.0).view(torch.int32).ne(0).float().mean(1)


def test_every_thread_flushes_inside_and_none_after(two_threads):
    assert denormal_share(2).tolist() == [1.0, 1.0]
    with denormals.flushing() as flushed:
        assert flushed
        # the OpenMP worker's half too: torch.set_flush_denormal alone would give [0.0, 1.0]
        assert denormal_share(2).tolist() == [0.0, 0.0]
        small = torch.full((64, 64), 1e-20)  # products of 1e-40: MKL's threads flush as well
        assert not (small @ small).view(torch.int32).any()
        with denormals.flushing() as inner:  # already flushing: left as it is, and still on after
            assert inner
        assert denormal_share(2).tolist() == [0.0, 0.0]
    assert denormal_share(2).tolist() == [1.0, 1.0]


def test_the_main_thread_alone_is_what_the_regions_fix(two_threads):
    torch.set_flush_denormal(True)
    try:
        assert sorted(denormal_share(2).tolist()) == [0.0, 1.0]  # why denormals.py reaches into the OpenMP pool
    finally:
        torch.set_flush_denormal(False)


def test_without_a_runtime_to_reach_the_workers_nothing_flushes(two_threads, monkeypatch, caplog):
    monkeypatch.setattr(denormals, "_runtime", denormals._NOT_YET)
    monkeypatch.setattr(denormals, "_candidates", lambda: [None])  # the calling thread alone
    monkeypatch.setattr(denormals, "_warned", False)
    with caplog.at_level(logging.WARNING, "regbench"), denormals.flushing() as flushed:
        assert not flushed
        assert denormal_share(2).tolist() == [1.0, 1.0]  # all or nothing: never the main thread alone
    assert "not flushed" in caplog.text


def test_another_packages_openmp_runtime_is_passed_over(two_threads, monkeypatch):
    """scikit-learn's wheel maps a libgomp of its own: its pool is not torch's, and setting the modes there
    reaches none of torch's workers (this failed in the suite after the digits dataset had been loaded)."""
    import sklearn.datasets  # noqa: F401 - maps scikit-learn's OpenMP runtime into the process

    paths = denormals._candidates()
    other = [p for p in paths if p is not None and "scikit_learn" in p]
    assert other, paths  # the case this test is for: a second runtime in the process
    monkeypatch.setattr(denormals, "_runtime", denormals._NOT_YET)
    monkeypatch.setattr(denormals, "_candidates", lambda: [*other, *paths])  # the wrong one tried first
    with denormals.flushing() as flushed:
        assert flushed and denormals._runtime not in other
        assert denormal_share(2).tolist() == [0.0, 0.0]
    assert denormal_share(2).tolist() == [1.0, 1.0]


def test_the_runtime_found_once_is_used_again_without_reading_the_process_maps(two_threads, monkeypatch):
    with denormals.flushing():
        pass
    monkeypatch.setattr(denormals, "_candidates", lambda: pytest.fail("searched again"))
    with denormals.flushing() as flushed:
        assert flushed and denormal_share(2).tolist() == [0.0, 0.0]


def test_disabled_flushes_nothing():
    with denormals.flushing(False) as flushed:
        assert not flushed
        assert denormal_share(1).tolist() == [1.0]


@pytest.mark.parametrize("flush", [True, False])
def test_training_flushes_as_configured_and_says_so(compose_cfg, flush, monkeypatch):
    seen = []
    real = denormals._set_everywhere
    monkeypatch.setattr(denormals, "_set_everywhere", lambda on, path: seen.append(on) or real(on, path))
    spec = validate_config(compose_cfg(*TINY, "regularizers=[l2]", f"trainer.flush_denormals={flush}"))
    pop = train_population(data.load(spec.dataset), spec.model, spec.trainer, members_for(spec), "cpu")
    assert pop.denormals_flushed is flush
    assert seen == ([True, False] if flush else [])  # on for the training, off after it
    assert denormal_share(1).tolist() == [1.0]


def test_confident_logits_give_denormal_gradients_that_training_flushes():
    """The effect where it matters: softmax probabilities of wrong classes below float32's normal range."""
    logits = torch.tensor([[0.0, -95.0, -100.0]])
    p = torch.softmax(logits, 1)
    assert 0 < p[0, 2] < torch.finfo(torch.float32).tiny  # a denormal, as gradients carry them
    with denormals.flushing():
        assert torch.softmax(logits, 1)[0, 2] == 0
