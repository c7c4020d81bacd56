"""Zhang et al. (2017) on MNIST-1D: a network memorises labels that carry no information, and the gap between
training and held-out accuracy grows with the fraction of labels replaced at random. Slow: full-size runs."""

from __future__ import annotations

import pytest

from regbench.experiment import run_experiment

RUN = ["regularizers=[]", "trainer.seeds=1", "trainer.progress=off"]


def _final(compose_cfg, *overrides) -> dict:
    (member,) = run_experiment(compose_cfg(*RUN, *overrides))["members"]
    return member["final"]


@pytest.mark.slow
def test_random_labels_are_memorised_while_test_accuracy_stays_at_chance(compose_cfg):
    final = _final(compose_cfg, "dataset.label_noise=1.0", "trainer.epochs=300")
    assert final["train_acc"] > 0.4  # chance is 0.1: the network has memorised thousands of random labels
    assert abs(final["test_acc"] - 0.1) < 0.04  # and learned nothing that carries over


@pytest.mark.slow
def test_the_gap_grows_with_label_noise(compose_cfg):
    gaps = [_final(compose_cfg, f"dataset.label_noise={p}")["gap_acc"] for p in (0.0, 0.2, 0.5)]
    assert gaps[0] < gaps[1] < gaps[2], gaps
