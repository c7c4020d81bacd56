"""The knobs every dataset has: train_size, label_noise, val_fraction, standardisation on the training split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from regbench.data.base import DatasetConfig, RawData, noisy_labels, prepare
from regbench.errors import UsageError


def _raw(kind="table", n=1000, n_test=200, classes=10, seed=0) -> RawData:
    rng = np.random.default_rng(seed)
    shape = {"table": (3,), "sequence": (20,), "image": (3, 4, 4)}[kind]
    scale = np.array([1.0, 100.0, 0.01]).reshape((1, 3) + (1,) * (len(shape) - 1)) if kind != "sequence" else 5.0
    x = (rng.normal(size=(n + n_test, *shape)) * scale + 7).astype(np.float32)
    y = rng.integers(0, classes, n + n_test)
    return RawData(x[:n], y[:n], x[n:], y[n:], kind, classes)


def _cfg(**kw) -> DatasetConfig:
    return DatasetConfig(name="t", **kw)


def test_train_size_subsamples_after_the_validation_hold_out():
    raw = _raw()
    full = prepare(raw, _cfg(standardize=False))
    small = prepare(raw, _cfg(standardize=False, train_size=100))
    assert small.sizes() == {"train": 100, "val": 100, "test": 200}
    assert torch.equal(small.x_val, full.x_val) and torch.equal(small.x_test, full.x_test)  # unchanged
    assert torch.equal(small.x_train, full.x_train[:100])  # a subset of the same training split...
    smaller = prepare(raw, _cfg(standardize=False, train_size=40))
    assert torch.equal(smaller.x_train, small.x_train[:40])  # ...and smaller subsets nest inside larger ones
    assert not torch.equal(small.x_train, prepare(raw, _cfg(standardize=False, train_size=100, split_seed=1)).x_train)


def test_train_size_larger_than_available_is_refused():
    with pytest.raises(UsageError) as err:
        prepare(_raw(), _cfg(train_size=901))
    assert str(err.value) == (
        "dataset.train_size=901: larger than the 900 training examples left after holding out 100 for validation"
    )
    assert prepare(_raw(), _cfg(train_size=900)).sizes()["train"] == 900


@pytest.mark.parametrize("fraction", [0.2, 0.5, 1.0])
def test_label_noise_replaces_that_fraction_of_training_labels_only(fraction):
    raw = _raw(n=2000)
    clean = prepare(raw, _cfg())
    noisy = prepare(raw, _cfg(label_noise=fraction))
    assert torch.equal(noisy.y_val, clean.y_val) and torch.equal(noisy.y_test, clean.y_test)
    assert torch.equal(noisy.x_train, clean.x_train)
    changed = (noisy.y_train != clean.y_train).float().mean().item()
    # round(f * n) labels are redrawn uniformly over 10 classes: 9 in 10 of them change
    assert changed == pytest.approx(fraction * 0.9, abs=0.03)
    if fraction == 1.0:  # random labels: independent of the true ones, uniform over the classes
        agree = (noisy.y_train == clean.y_train).float().mean().item()
        assert agree == pytest.approx(0.1, abs=0.03)
        counts = torch.bincount(noisy.y_train, minlength=10).float() / len(noisy.y_train)
        assert counts.min() > 0.07 and counts.max() < 0.13
    assert torch.equal(prepare(raw, _cfg(label_noise=fraction)).y_train, noisy.y_train)  # fixed by split_seed


def test_label_noise_levels_nest_and_zero_is_the_identity():
    y = np.arange(1000) % 10
    low, high = noisy_labels(y, 0.2, 10, 3), noisy_labels(y, 0.5, 10, 3)
    assert np.array_equal(noisy_labels(y, 0.0, 10, 3), y)
    hit_low = np.flatnonzero(low != y)
    assert np.array_equal(high[hit_low], low[hit_low])  # the examples noisy at 0.2 are noisy at 0.5, alike
    assert not np.array_equal(noisy_labels(y, 0.5, 10, 4), high)


@pytest.mark.parametrize("kind", ["table", "image", "sequence"])
def test_standardisation_uses_training_statistics_per_channel(kind):
    raw = _raw(kind)
    s = prepare(raw, _cfg(train_size=300))
    axes = {"table": (0,), "image": (0, 2, 3), "sequence": (0, 1)}[kind]
    mean = s.x_train.mean(dim=axes)
    std = s.x_train.std(dim=axes, unbiased=False)
    torch.testing.assert_close(mean, torch.zeros_like(mean), atol=1e-4, rtol=0)
    torch.testing.assert_close(std, torch.ones_like(std), atol=1e-4, rtol=0)
    # validation and test are mapped with the training subset's statistics, not their own
    plain = prepare(raw, _cfg(train_size=300, standardize=False))
    m = plain.x_train.double().mean(dim=axes, keepdim=True)
    sd = plain.x_train.double().std(dim=axes, unbiased=False, keepdim=True)
    torch.testing.assert_close(s.x_val.double(), (plain.x_val - m) / sd, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(s.x_test.double(), (plain.x_test - m) / sd, atol=1e-4, rtol=1e-4)
    assert s.x_test.mean().abs() > 1e-3  # the test split is not standardised on itself


def test_constant_features_stay_finite_and_uint8_pixels_are_scaled():
    raw = _raw()
    raw.x_train[:, 1] = 3.0
    s = prepare(raw, _cfg())
    assert torch.isfinite(s.x_train).all() and (s.x_train[:, 1] == 0).all()
    img = RawData(
        np.full((10, 1, 2, 2), 255, np.uint8),
        np.arange(10) % 2,
        np.zeros((2, 1, 2, 2), np.uint8),
        np.arange(2),
        "image",
        2,
    )
    s = prepare(img, _cfg(standardize=False))
    assert s.x_train.max().item() == 1.0 and s.x_test.max().item() == 0.0
