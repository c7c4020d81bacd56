"""Every dataset loads (from files the test writes, or generated) and trains one tiny run; users' files fail
with one line naming the file and the problem."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from regbench import data
from regbench.config import validate_config
from regbench.errors import RunError, UsageError
from regbench.experiment import run_experiment

from .conftest import run_cli
from .datafiles import write_cifar_folder, write_idx_folder

MODEL_ARGS = {"mlp": ["model.width=16"], "cnn": ["model.channels=4"]}
TINY_TRAIN = ["trainer.epochs=1", "trainer.seeds=1", "trainer.batch_size=10", "trainer.progress=off"]


def _write_csv(path, n=80, features=3, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.normal(size=(n, features)), columns=[f"f{i}" for i in range(features)])
    df.insert(1, "species", np.arange(n) % 3)  # the label column need not come first or last
    df.to_csv(path, index=False)
    return df


def _write_npz(path, shape, n=80, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    np.savez(path, x=rng.normal(size=(n, *shape)).astype(np.float32), y=np.arange(n) % classes)


def _dataset_args(name, tmp_path) -> list[str]:
    """Overrides that give dataset `name` a small, local source."""
    if name == "mnist1d":
        return ["dataset.num_samples=300"]
    if name == "moons" or name == "blobs":
        return ["dataset.num_samples=200"]
    if name in ("mnist", "fashion_mnist"):
        write_idx_folder(tmp_path / name, n_train=60, n_test=20)
        return [f"dataset.root={tmp_path / name}"]
    if name == "cifar10":
        write_cifar_folder(tmp_path / name)
        return [f"dataset.root={tmp_path / name}"]
    if name == "csv":
        _write_csv(tmp_path / "d.csv")
        return [f"dataset.path={tmp_path / 'd.csv'}", "dataset.label_column=species"]
    if name == "npz":
        _write_npz(tmp_path / "d.npz", (2, 8, 8))
        return [f"dataset.path={tmp_path / 'd.npz'}"]
    return []


KINDS = {
    "mnist1d": "sequence",
    "digits": "image",
    "moons": "table",
    "blobs": "table",
    "mnist": "image",
    "fashion_mnist": "image",
    "cifar10": "image",
    "csv": "table",
    "npz": "image",
}


@pytest.mark.parametrize("model", ["mlp", "cnn"])
@pytest.mark.parametrize("name", list(data.DATASETS))
def test_every_dataset_trains_one_tiny_run_with_each_model(compose_cfg, tmp_path, name, model):
    assert set(KINDS) == set(data.DATASETS)
    cfg = compose_cfg(
        f"dataset={name}", *_dataset_args(name, tmp_path), f"model={model}", *MODEL_ARGS[model], *TINY_TRAIN
    )
    if model == "cnn" and KINDS[name] == "table":
        with pytest.raises(
            UsageError, match=r"^model=cnn: needs sequence or image data, got table data; use model=mlp$"
        ):
            run_experiment(cfg)
        return
    record = run_experiment(cfg)
    sizes = record["job"]["sizes"]
    assert sizes["train"] > 0 and sizes["val"] > 0 and sizes["test"] > 0
    for m in record["members"]:
        assert all(np.isfinite(v) for v in m["final"].values())
    assert data.load(validate_config(cfg).dataset).kind == KINDS[name]


def test_moons_and_blobs_follow_their_size_and_shape_parameters(compose_cfg):
    s = data.load(validate_config(compose_cfg("dataset=blobs", "dataset.centers=5", "dataset.features=7")).dataset)
    assert s.n_classes == 5 and s.input_shape == (7,) and sum(s.sizes().values()) == 1000
    assert set(s.y_test.tolist()) <= set(range(5))
    moons = [validate_config(compose_cfg("dataset=moons", f"dataset.noise={v}")).dataset for v in (0.0, 0.3)]
    quiet, noisy = (data.get("moons").load(c) for c in moons)
    assert quiet.n_classes == 2 and quiet.x_train.shape[1] == 2
    # without noise the points lie exactly on the two unit half-circles
    r0 = np.hypot(
        quiet.x_train[:, 0] - np.where(quiet.y_train == 0, 0.0, 1.0),
        quiet.x_train[:, 1] - np.where(quiet.y_train == 0, 0.0, 0.5),
    )
    assert np.allclose(r0, 1.0, atol=1e-5)
    assert not np.allclose(noisy.x_train, quiet.x_train)


def test_csv_uses_the_named_label_column_and_the_rest_as_features(compose_cfg, tmp_path):
    df = _write_csv(tmp_path / "d.csv", n=50)
    _write_csv(tmp_path / "t.csv", n=20, seed=1)
    cfg = compose_cfg(
        "dataset=csv",
        f"dataset.path={tmp_path / 'd.csv'}",
        "dataset.label_column=species",
        f"dataset.test_path={tmp_path / 't.csv'}",
        "dataset.standardize=false",
    )
    s = data.load(validate_config(cfg).dataset)
    assert s.sizes() == {"train": 45, "val": 5, "test": 20} and s.n_classes == 3 and s.kind == "table"
    features = df[["f0", "f1", "f2"]].to_numpy(np.float32)
    rows = {tuple(r) for r in features.tolist()}
    assert all(tuple(r) in rows for r in s.x_train.tolist())
    for x, y in zip(s.x_train.tolist()[:10], s.y_train.tolist()[:10]):
        i = int(np.flatnonzero((np.abs(features - np.array(x, np.float32)) < 1e-6).all(1))[0])
        assert df["species"].iloc[i] == y


def test_npz_kind_follows_the_shape_or_the_setting(compose_cfg, tmp_path):
    def load(shape, *extra):
        _write_npz(tmp_path / "d.npz", shape)
        return data.load(
            validate_config(compose_cfg("dataset=npz", f"dataset.path={tmp_path / 'd.npz'}", *extra)).dataset
        )

    assert (load((6,)).kind, load((6,)).input_shape) == ("table", (6,))
    assert (load((12,), "dataset.kind=sequence").kind, load((12,)).input_shape) == ("sequence", (12,))
    assert (load((8, 8)).kind, load((8, 8)).input_shape) == ("image", (1, 8, 8))
    assert load((3, 8, 8)).input_shape == (3, 8, 8)


NOT_FLOAT32 = "is not a finite float32 value; inputs must be finite with |x| <= 3.403e+38"
TOO_LARGE = "is too large; labels are class indices 0..9999 (at most 10000 classes)"


def _err(compose_cfg, *overrides):
    with pytest.raises((RunError, UsageError)) as err:
        data.load(validate_config(compose_cfg(*overrides)).dataset)
    assert "\n" not in str(err.value)
    return type(err.value), str(err.value)


def _csv(tmp_path, text):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    return f"dataset.path={p}", p


@pytest.mark.parametrize(
    "text,kind,message",
    [
        ("a,b,label\n1,2,0\n3,4,1.5\n", RunError, "label 1.5 (line 3) is not an integer class index"),
        ("a,b,label\n1,2,0\n3,4,-1\n", RunError, "label -1 (line 3) is negative; labels are class indices 0, 1, ..."),
        ("a,b,label\n1,2,cat\n3,4,dog\n", RunError, "labels must be integer class indices 0, 1, ..., got 'cat'"),
        ("a,b,label\n1,2,0\n3,4,\n", RunError, "label missing on line 3"),
        ("a,b,label\n1,x,0\n3,4,1\n", RunError, "column 'b' is not numeric ('x' on line 2)"),
        ("a,b,label\n1,,0\n3,4,1\n", RunError, "column 'b' has an empty value on line 2"),
        ("a,b,label\n", RunError, "no rows of data"),
        (
            "a,b,klass\n1,2,0\n3,4,1\n",
            UsageError,
            "dataset.label_column='label': no such column in {p}; columns: a, b, klass",
        ),
        ("label\n0\n1\n", RunError, "no feature columns besides 'label'"),
        # a repeated label column would otherwise be trained on as a feature (pandas renames it label.1)
        (
            "a,b,c,label,label\n" + "".join(f"{i},{i},{i},{i % 2},{i % 2}\n" for i in range(20)),
            RunError,
            "column 'label' appears 2 times in the header; column names must be unique",
        ),
        ("a,b,label\n1,2,0\n3,inf,1\n5,6,1\n", RunError, f"inf (column 'b', line 3) {NOT_FLOAT32}"),
        ("a,b,label\n1,2,0\n3,4,1\n-1e39,6,1\n", RunError, f"-1e+39 (column 'a', line 4) {NOT_FLOAT32}"),
        ("a,label\n1,0\n2,2000000000\n3,1\n", RunError, f"label 2000000000 (line 3) {TOO_LARGE}"),
        ("a,label\n1,0\n2,1\n3,1e30\n", RunError, f"label 1e+30 (line 4) {TOO_LARGE}"),
        ("a,label\n1,0\n", RunError, "1 row; need at least 3, one each for training, validation and test"),
        (
            "a,label\n" + "".join(f"{i},1\n" for i in range(20)),
            RunError,
            "every label is 1; a classifier needs at least two classes",
        ),
    ],
)
def test_bad_csv_is_one_line_naming_the_file(compose_cfg, tmp_path, text, kind, message):
    arg, p = _csv(tmp_path, text)
    got_kind, got = _err(compose_cfg, "dataset=csv", arg)
    assert got_kind is kind
    assert got == (message.format(p=p) if kind is UsageError else f"{p}: {message}")


def test_a_test_fraction_that_leaves_too_few_rows_is_blamed_not_val_fraction(compose_cfg, tmp_path):
    arg, p = _csv(tmp_path, "a,label\n1,0\n2,1\n3,0\n")
    assert _err(compose_cfg, "dataset=csv", arg, "dataset.test_fraction=0.9") == (
        UsageError,
        f"dataset.test_fraction=0.9: leaves 0 of the 3 rows of {p} for training and validation; must leave at least 2",
    )


def test_a_training_split_of_one_class_is_loaded_with_a_warning(compose_cfg, tmp_path, caplog):
    arg, p = _csv(tmp_path, "a,label\n" + "".join(f"{i},0\n" for i in range(20)))
    (tmp_path / "test.csv").write_text("a,label\n1,0\n2,1\n")
    s = data.load(
        validate_config(compose_cfg("dataset=csv", arg, f"dataset.test_path={tmp_path / 'test.csv'}")).dataset
    )
    assert s.n_classes == 2 and set(s.y_train.tolist()) == {0}
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warned == [
        f"{p}: the training split holds only class 0 of 2 (18 examples); the network can learn nothing but that"
    ]
    caplog.clear()
    _write_csv(tmp_path / "fine.csv")
    data.load(
        validate_config(
            compose_cfg("dataset=csv", f"dataset.path={tmp_path / 'fine.csv'}", "dataset.label_column=species")
        ).dataset
    )
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_the_run_id_follows_the_data_files_content(compose_cfg, tmp_path, monkeypatch):
    from regbench.results import store

    _write_csv(tmp_path / "d.csv")
    _write_csv(tmp_path / "t.csv", n=20, seed=1)
    paths = [f"dataset.path={tmp_path / 'd.csv'}", f"dataset.test_path={tmp_path / 't.csv'}"]
    spec = validate_config(compose_cfg("dataset=csv", *paths, "dataset.label_column=species"))
    opened = []

    def counting_open(path, *args):
        opened.append(path)
        return open(path, *args)  # noqa: SIM115 - store's own `with` closes it

    monkeypatch.setattr(store, "open", counting_open, raising=False)
    first = store.run_id(spec)
    assert [store.run_id(spec) for _ in range(3)] == [first] * 3
    assert len(opened) == 2  # each file hashed once, then known by its size and mtime
    for name in ("d.csv", "t.csv"):
        before = store.run_id(spec)
        f = tmp_path / name
        mtime = f.stat().st_mtime_ns
        f.write_text(f.read_text().replace("0.", "1.", 1))  # same size, other content
        os.utime(f, ns=(mtime + 10**9, mtime + 10**9))  # a second later: the clock's tick may be coarser than this test
        assert store.run_id(spec) != before, name
    edited = store.run_id(spec)
    os.utime(tmp_path / "d.csv", ns=(0, 0))  # touched, not changed
    assert store.run_id(spec) == edited
    # generated datasets have no file: their run ids are what they were
    assert "data_files" not in store.identity(validate_config(compose_cfg("dataset=moons")))


def test_labels_beyond_n_classes_name_the_file_they_are_in(compose_cfg, tmp_path):
    arg, p = _csv(tmp_path, "a,label\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    (tmp_path / "test.csv").write_text("a,label\n1,0\n2,3\n")
    kind, got = _err(
        compose_cfg, "dataset=csv", arg, f"dataset.test_path={tmp_path / 'test.csv'}", "dataset.n_classes=2"
    )
    assert (kind, got) == (
        RunError,
        f"{tmp_path / 'test.csv'}: label 3 out of range for dataset.n_classes=2 (labels 0..1)",
    )
    s = data.load(validate_config(compose_cfg("dataset=csv", arg, "dataset.n_classes=5")).dataset)
    assert s.n_classes == 5  # more classes than the labels show: allowed, the head gets 5 outputs


@pytest.mark.parametrize(
    "arrays,extra,message",
    [
        ({"x": np.zeros((4, 3)), "y": np.zeros(5, int)}, [], "x has 4 examples but y has 5"),
        ({"x": np.zeros((4, 3))}, [], "no array 'y'; found: x"),
        (
            {"x": np.zeros(4), "y": np.zeros(4, int)},
            [],
            "x has shape (4,); expected [N, F], [N, L], [N, H, W] or [N, C, H, W]",
        ),
        (
            {"x": np.zeros((4, 3)), "y": np.zeros((4, 1), int)},
            [],
            "y must be a 1-D array of class indices, got shape (4, 1)",
        ),
        (
            {"x": np.zeros((4, 2, 3)), "y": np.arange(4)},
            ["dataset.kind=table"],
            "x has shape (4, 2, 3); table data must be [N, F]",
        ),
        (
            {"x": np.zeros((4, 3)), "y": np.arange(4)},
            ["dataset.kind=image"],
            "x has shape (4, 3); image data must be [N, H, W] or [N, C, H, W]",
        ),
        ({"x": np.full((4, 3), np.nan), "y": np.arange(4)}, [], f"nan (x[0, 0]) {NOT_FLOAT32}"),
        ({"x": np.where(np.eye(4, 3) > 0, np.inf, 0.0), "y": np.arange(4)}, [], f"inf (x[0, 0]) {NOT_FLOAT32}"),
        ({"x": np.eye(4, 3) * 1e39, "y": np.arange(4)}, [], f"1e+39 (x[0, 0]) {NOT_FLOAT32}"),  # inf as float32
        ({"x": np.zeros((4, 0)), "y": np.arange(4)}, [], "x has shape (4, 0); no input values per example"),
        ({"x": np.zeros((4, 3, 0)), "y": np.arange(4)}, [], "x has shape (4, 3, 0); no input values per example"),
        ({"x": np.zeros((0, 3)), "y": np.zeros(0, int)}, [], "no examples (x has shape (0, 3))"),
        ({}, [], "no array 'x'; found: none"),
        (
            {"x": np.zeros((1, 3)), "y": np.zeros(1, int)},
            [],
            "1 example; need at least 3, one each for training, validation and test",
        ),
        ({"x": np.zeros((4, 3)), "y": np.array([0, 1, 2**40, 1])}, [], f"label 1099511627776 (y[2]) {TOO_LARGE}"),
        ({"x": np.zeros((4, 3)), "y": np.array([0, 1, 2.5, 3])}, [], "label 2.5 (y[2]) is not an integer class index"),
        ({"x": np.array(["a", "b"]).reshape(2, 1), "y": np.arange(2)}, [], "x must be numeric, got dtype <U1"),
    ],
)
def test_bad_npz_is_one_line_naming_the_file(compose_cfg, tmp_path, arrays, extra, message):
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    kind, got = _err(compose_cfg, "dataset=npz", f"dataset.path={p}", *extra)
    assert kind is RunError and got == f"{p}: {message}"


def test_unreadable_and_missing_files_are_run_errors(compose_cfg, tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"this is no zip archive")
    np.save(tmp_path / "array.npy", np.zeros(3))
    for name in ("junk.npz", "array.npy"):  # np.load says "pickled data" for the one, returns an array for the other
        kind, got = _err(compose_cfg, "dataset=npz", f"dataset.path={tmp_path / name}")
        assert (kind, got) == (
            RunError,
            f"{tmp_path / name}: not an .npz file (not a zip archive); write one with numpy.savez(path, x=..., y=...)",
        )
    kind, got = _err(compose_cfg, "dataset=csv", f"dataset.path={tmp_path / 'nope.csv'}")
    assert kind is RunError and got == f"{tmp_path / 'nope.csv'}: no such file"
    _write_npz(tmp_path / "a.npz", (5,))
    _write_npz(tmp_path / "b.npz", (6,))
    kind, got = _err(
        compose_cfg, "dataset=npz", f"dataset.path={tmp_path / 'a.npz'}", f"dataset.test_path={tmp_path / 'b.npz'}"
    )
    assert got == f"{tmp_path / 'b.npz'}: examples of shape (6,), but {tmp_path / 'a.npz'} has (5,)"


def test_user_file_errors_through_the_cli(tmp_path):
    r = run_cli("run", "dataset=csv", cwd=tmp_path)
    assert (r.returncode, r.stderr) == (
        2,
        "regbench: error: dataset.path: required; the csv file to read, e.g. dataset.path=data.csv\n",
    )
    assert not (tmp_path / "results").exists()
    r = run_cli("run", "dataset=npz", "dataset.path=missing.npz", "trainer.progress=off", cwd=tmp_path)
    assert (r.returncode, r.stderr) == (1, "regbench: error: missing.npz: no such file\n")


def test_mnist1d_is_generated_once_then_read_from_the_cache(tmp_path, monkeypatch):
    from regbench.data import mnist1d

    monkeypatch.setenv("REGBENCH_CACHE", str(tmp_path))
    mnist1d._generate.cache_clear()
    made = mnist1d.load(mnist1d.Mnist1dConfig(num_samples=300, data_seed=5))
    path = mnist1d.cache_file(300, 5)
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind

    def must_not_generate(*args):
        raise AssertionError("generated again although the cache holds the set")

    monkeypatch.setattr(mnist1d, "_make", must_not_generate)
    mnist1d._generate.cache_clear()
    cached = mnist1d.load(mnist1d.Mnist1dConfig(num_samples=300, data_seed=5))
    for name in ("x_train", "y_train", "x_test", "y_test"):
        a, b = getattr(made, name), getattr(cached, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    mnist1d._generate.cache_clear()


@pytest.mark.parametrize("damage", ["truncated", "foreign", "short"])
def test_a_damaged_mnist1d_cache_file_is_generated_again_and_replaced(tmp_path, monkeypatch, damage):
    from regbench.data import mnist1d

    monkeypatch.setenv("REGBENCH_CACHE", str(tmp_path))
    mnist1d._generate.cache_clear()
    want = mnist1d.load(mnist1d.Mnist1dConfig(num_samples=300, data_seed=6))
    path = mnist1d.cache_file(300, 6)
    if damage == "truncated":  # a crash mid-write cannot leave this (atomic rename), a full disk or a copy can
        path.write_bytes(path.read_bytes()[:500])
    elif damage == "foreign":  # an npz without the arrays
        np.savez(path.open("wb"), other=np.zeros(3))
    else:  # the arrays, but not the size the name says
        np.savez(path.open("wb"), x=np.zeros((4, 40)), y=np.zeros(4), x_test=np.zeros((1, 40)), y_test=np.zeros(1))
    mnist1d._generate.cache_clear()
    got = mnist1d.load(mnist1d.Mnist1dConfig(num_samples=300, data_seed=6))
    assert np.array_equal(got.x_train, want.x_train) and np.array_equal(got.y_test, want.y_test)
    with np.load(path) as f:
        assert np.array_equal(f["x"], want.x_train)
    mnist1d._generate.cache_clear()


def test_an_unwritable_cache_only_costs_generating_again(tmp_path, monkeypatch):
    from regbench.data import mnist1d

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("REGBENCH_CACHE", str(blocker))  # its mnist1d/ folder cannot be made
    mnist1d._generate.cache_clear()
    got = mnist1d.load(mnist1d.Mnist1dConfig(num_samples=300, data_seed=7))
    assert got.x_train.shape == (240, 40)
    mnist1d._generate.cache_clear()
