"""Bad input, refused before anything runs: one line naming the key and what is allowed, the right exit code.

The `regbench` command runs in-process here (typer's runner) since nothing gets as far as Hydra; test_cli.py runs
a few of the same refusals in a real subprocess. Exit code 2 is a usage error, 1 a runtime failure (no GPU, a
missing or unreadable data file: the data are loaded before launch); neither prints a traceback nor creates
results/.
"""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from regbench.cli import app
from regbench.errors import UsageError

from .conftest import run_cli

CASES = [
    # unknown group options and keys, unknown flags, unparsable overrides
    (["trainer=fast"], "trainer: unknown name 'fast'; known: default"),
    (["++foo=1"], "foo: unknown top-level key; allowed: dataset, model, regularizers, trainer, logger"),
    (["--bogus"], "--bogus: unknown option; see `regbench run --help`"),
    (
        ["regularizers=[l2"],
        "regularizers=[l2: not a valid override (no viable alternative at input '[l2'); "
        "expected key=value or group=[a,b]",
    ),
    # wrong types
    (["trainer.seeds=abc"], "trainer.seeds='abc': must be an integer"),
    (["trainer.lr=fast"], "trainer.lr='fast': must be a number"),
    (["dataset.standardize=maybe"], "dataset.standardize='maybe': must be true or false"),
    (["trainer.resume=maybe"], "trainer.resume='maybe': must be true or false"),
    (["trainer.cuda_graph=maybe"], "trainer.cuda_graph='maybe': must be true or false"),
    (["trainer.flush_denormals=2"], "trainer.flush_denormals=2: must be true or false"),
    (["trainer.optimizer=rmsprop"], "trainer.optimizer='rmsprop': must be one of adam, sgd"),
    (["trainer.lr=nan"], "trainer.lr=nan: must be a finite number"),
    # out-of-range probabilities, ratios and strengths
    (["regularizers.dropout.input_p=-0.1"], "regularizers.dropout.input_p=-0.1: must be in [0.0, 1.0)"),
    (["regularizers=[l1]", "regularizers.l1.strength=-1"], "regularizers.l1.strength=-1.0: must be in [0.0, inf)"),
    (["trainer.momentum=1"], "trainer.momentum=1.0: must be in [0.0, 1.0)"),
    (["dataset.val_fraction=1.5"], "dataset.val_fraction=1.5: must be in (0.0, 1.0)"),
    (["trainer.lr=100"], "trainer.lr=100.0: must be in (0.0, 10.0]"),
    (["model=cnn", "model.channels=0"], "model.channels=0: must be in [1, 4096]"),
    (["model.depth=65"], "model.depth=65: must be in [0, 64]"),
    # non-positive counts, sizes and rates
    (["trainer.seeds=-1"], "trainer.seeds=-1: must be in [1, 10000]"),
    (["-m", "trainer.seeds=1,0"], "trainer.seeds=0: must be in [1, 10000]"),
    (["trainer.batch_size=-5"], "trainer.batch_size=-5: must be in [1, inf)"),
    (["trainer.lr=-0.1"], "trainer.lr=-0.1: must be in (0.0, 10.0]"),
    (["trainer.epochs=0"], "trainer.epochs=0: must be in [1, 100000]"),
    (["trainer.eval_every=0"], "trainer.eval_every=0: must be in [1, inf)"),
    (["trainer.steps=0"], "trainer.steps=0: must be in [1, 10000000]"),
    (["trainer.checkpoint_every=0"], "trainer.checkpoint_every=0: must be in [1, inf)"),
    (["trainer.seed=-3"], "trainer.seed=-3: must be in [0, 4611686018427387904]"),
    (["trainer.threads=0"], "trainer.threads=0: must be in [1, inf)"),
    (["trainer.threads=-1"], "trainer.threads=-1: must be in [1, inf)"),
    # a sweep's launcher settings, and what the batched launcher cannot do
    (
        ["-m", "trainer.seed=0,1", "trainer.checkpoint_every=5"],
        "trainer.checkpoint_every=5: not supported by the batched sweep launcher; "
        "use hydra/launcher=basic (or joblib/submitit) for per-job checkpoints",
    ),
    (
        ["-m", "hydra/launcher=processes", "hydra.launcher.n_jobs=0"],
        "hydra.launcher.n_jobs=0: no process to run jobs in; "
        "allowed: an integer >= 1, or -1 (one per core), -2 (all cores but one), ...",
    ),
    (
        ["-m", "hydra.launcher.memory_budget_mb=-5"],
        "hydra.launcher.memory_budget_mb=-5: not a usable value; allowed: an integer >= 1",
    ),
    (
        ["-m", "hydra/launcher=local", "hydra.launcher.cpus_per_task=0"],
        "hydra.launcher.cpus_per_task=0: not a usable value; allowed: an integer >= 1",
    ),
    (["dataset.split_seed=-1"], "dataset.split_seed=-1: must be in [0, inf)"),
    # budgets that would never end, seeds past int64 (seed + seeds - 1 must fit: the engine keeps them in int64)
    (["trainer.epochs=100001"], "trainer.epochs=100001: must be in [1, 100000]"),
    (["trainer.steps=10000001"], "trainer.steps=10000001: must be in [1, 10000000]"),
    (["trainer.seed=9223372036854775808"], "trainer.seed=9223372036854775808: must be in [0, 4611686018427387904]"),
    (["trainer.seed=9223372036854775000"], "trainer.seed=9223372036854775000: must be in [0, 4611686018427387904]"),
    # interpolations that point nowhere or at themselves, an override with no key, a sweep with nothing in it
    (["trainer.lr=${nope.x}"], "trainer.lr=${nope.x}: interpolation key 'nope.x' not found"),
    (["trainer.lr=${trainer.lr}"], "trainer.lr=${trainer.lr}: recursive interpolation detected"),
    (["=5"], "=5: no key before '='; expected key=value or group=[a,b]"),
    (
        ["-m", "trainer.seed=range(1,1)"],
        "trainer.seed=range(1,1): the sweep has no jobs; give each swept key at least one value",
    ),
    # sizes and seeds the generators could not honour: hours of generating, or numpy's seed limit of 2**32
    (["dataset.num_samples=10000000000"], "dataset.num_samples=10000000000: must be in [100, 1000000]"),
    (["dataset=moons", "dataset.num_samples=10000001"], "dataset.num_samples=10000001: must be in [10, 10000000]"),
    (
        ["dataset=blobs", "dataset.num_samples=10000000", "dataset.features=100"],
        "dataset.num_samples=10000000: with dataset.features=100 that is 1000000000 values; "
        "allowed: num_samples x features <= 100000000",
    ),
    (["dataset.data_seed=4294967296"], "dataset.data_seed=4294967296: must be in [0, 4294967295]"),
    (["dataset=blobs", "dataset.data_seed=4294967296"], "dataset.data_seed=4294967296: must be in [0, 4294967295]"),
    (["dataset=csv", "dataset.n_classes=10001"], "dataset.n_classes=10001: must be in [2, 10000]"),
    # what only the data can tell: checked for every job of a sweep before the first starts
    (
        ["dataset.num_samples=100", "dataset.val_fraction=0.999"],
        "dataset.val_fraction=0.999: leaves 0 training and 80 validation examples out of 80; "
        "must leave at least one of each",
    ),
    (
        ["dataset.num_samples=600", "trainer.batch_size=1000"],
        "trainer.batch_size=1000: larger than the training split (432)",
    ),
    (
        ["-m", "dataset.num_samples=600", "trainer.batch_size=100,1000"],
        "trainer.batch_size=1000: larger than the training split (432)",
    ),
    (["dataset=digits", "trainer.batch_size=2000"], "trainer.batch_size=2000: larger than the training split (1294)"),
    # a model or regularizer that needs a spatial axis, on a table
    (["dataset=moons", "model=cnn"], "model=cnn: needs sequence or image data, got table data; use model=mlp|torch"),
    (
        ["dataset=blobs", "regularizers=[l2,cutout]"],
        "regularizers.cutout: needs sequence or image data, got table data",
    ),
    (
        ["-m", "dataset=moons", "regularizers=[l2],[cutout]"],
        "regularizers.cutout: needs sequence or image data, got table data",
    ),
]


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_usage_errors_are_one_line_exit_2(invoke, args, message):
    r = invoke(*args)
    assert (r.exit_code, r.stderr) == (2, f"regbench: error: {message}\n")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_is_a_runtime_error_exit_1(invoke):
    r = invoke("trainer.device=cuda")
    expected = "regbench: error: trainer.device=cuda: no CUDA GPU is visible to torch; allowed here: auto, cpu\n"
    assert (r.exit_code, r.stderr) == (1, expected)


DATA_FILES = [
    (["dataset=csv"], 2, "dataset.path: required; the csv file to read, e.g. dataset.path=data.csv"),
    (["dataset=csv", "dataset.path=missing.csv"], 1, "missing.csv: no such file"),
    (["dataset=npz", "dataset.path=missing.npz"], 1, "missing.npz: no such file"),
    (["dataset=csv", "dataset.path=adir"], 1, "adir: no such file"),
    (["dataset=csv", "dataset.path=corrupt.csv"], 1, "corrupt.csv: column 'a' is not numeric ('x' on line 3)"),
    (
        ["dataset=csv", "dataset.path=twice.csv"],
        1,
        "twice.csv: column 'label' appears 2 times in the header; column names must be unique",
    ),
    (
        ["dataset=csv", "dataset.path=short.csv"],
        1,
        "short.csv: 1 row; need at least 3, one each for training, validation and test",
    ),
]


@pytest.mark.parametrize("args,code,message", DATA_FILES, ids=[" ".join(a) for a, _, _ in DATA_FILES])
def test_missing_or_unreadable_data_files_are_refused_before_launch(invoke, tmp_path, args, code, message):
    (tmp_path / "adir").mkdir()
    (tmp_path / "corrupt.csv").write_text("a,b,label\n1,2,0\nx,y\n")
    (tmp_path / "twice.csv").write_text("a,label,label\n" + "".join(f"{i},{i % 2},{i % 2}\n" for i in range(20)))
    (tmp_path / "short.csv").write_text("a,label\n1,0\n")
    r = invoke(*args)
    assert (r.exit_code, r.stderr) == (code, f"regbench: error: {message}\n")


HEADER = "member,arm,seed,epoch,step,train_loss,train_acc,val_loss,val_acc,test_loss,test_acc\n"


@pytest.mark.parametrize(
    "content,why",
    [
        ("", "empty; a history has a header (member,arm,seed,epoch,train_loss,"),
        (HEADER, "no rows, only a header"),
        ("member,arm,epoch\n0,baseline,1\n", "missing columns seed, train_loss, train_acc, val_loss, val_acc,"),
        (HEADER + "0,baseline,0,one,4,1,0.5,1,0.5,1,0.5\n", "non-numeric values in columns epoch"),
        (
            HEADER + "0,baseline,0,1,4,1,0.5,1,0.5,1,0.5\n1,baseline,1\n",
            "missing or fractional values in columns epoch",
        ),
        ('"unclosed,\n', "not readable as csv: "),
    ],
)
def test_a_malformed_history_is_one_line_naming_the_file(tmp_path, content, why):
    (tmp_path / "history.csv").write_text(content)
    r = CliRunner().invoke(app, ["early-stop", str(tmp_path)])
    assert r.exit_code == 1, r.output
    assert r.stderr.startswith(f"regbench: error: {tmp_path / 'history.csv'}: {why}") and r.stderr.count("\n") == 1


LONG = "x" * 5000


@pytest.mark.parametrize(
    "args,message",
    [
        (["dataset=csv", f"dataset.path={LONG}"], "dataset.path=" + "x" * 60 + "...(5000 characters): cannot read it"),
        ([f"hydra.run.dir={LONG}"], "hydra.run.dir=" + "x" * 60 + "...(5000 characters): cannot make this folder"),
    ],
    ids=["dataset.path", "hydra.run.dir"],
)
def test_a_path_too_long_for_the_file_system_is_one_line_exit_2(invoke, args, message):
    r = invoke(*args)
    assert r.exit_code == 2
    assert r.stderr.startswith(f"regbench: error: {message} (File name too long)") and r.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "args,key,value",
    [
        (["hydra.run.dir=afile"], "hydra.run.dir", "afile"),
        (["hydra.run.dir=afile/sub"], "hydra.run.dir", "afile/sub"),
        (["-m", "hydra.sweep.dir=afile/sub", "trainer.seeds=1,2"], "hydra.sweep.dir", "afile/sub"),
    ],
    ids=["run dir is a file", "run dir under a file", "sweep dir under a file"],
)
def test_an_output_folder_that_cannot_be_made_is_one_line_exit_1(invoke, tmp_path, args, key, value):
    """A file in the way stands in for any folder that cannot be made (tests run as root, which may write anywhere):
    the same OSError that Hydra would raise as a traceback after the checks."""
    (tmp_path / "afile").write_text("x")
    r = invoke(*args, "dataset.num_samples=600")
    expected = f"{key}={value}: cannot make this folder (Not a directory); choose another with {key}=PATH"
    assert (r.exit_code, r.stderr) == (1, f"regbench: error: {expected}\n")
    assert (tmp_path / "afile").read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_working_folder_where_results_cannot_be_made_is_one_line_exit_1(tmp_path, monkeypatch):
    """results/ a file stands in for a read-only working folder: the job's folder below it cannot be made."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results").write_text("x")
    for args in (["dataset.num_samples=600"], ["-m", "dataset.num_samples=600", "trainer.seeds=1,2"]):
        r = CliRunner().invoke(app, ["run", *args])
        assert r.exit_code == 1 and r.stderr.count("\n") == 1, r.stderr
        key = "hydra.sweep.dir" if "-m" in args else "hydra.run.dir"
        assert r.stderr.startswith(f"regbench: error: {key}=results/"), r.stderr
        assert "cannot make this folder (Not a directory)" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


def test_an_experiment_preset_without_m_warns_that_its_sweep_does_not_run(invoke):
    r = invoke("experiment=strengths", "trainer.epochs=0")
    warning = (
        "regbench: warning: experiment=strengths: the preset's sweep only runs with -m "
        "(regbench run -m experiment=strengths); running its single base job\n"
    )
    assert r.stderr == warning + "regbench: error: trainer.epochs=0: must be in [1, 100000]\n"
    assert invoke("-m", "experiment=strengths", "trainer.epochs=0").stderr.startswith("regbench: error: ")


def test_the_largest_first_seed_allowed_trains(compose_cfg):
    """seed + seeds - 1 at the bound still fits the engine's int64 seeds, with the most seeds allowed."""
    from regbench.config import MAX_SEED, validate_config
    from regbench.experiment import run_experiment

    spec = validate_config(compose_cfg("trainer.seeds=10000", f"trainer.seed={MAX_SEED}"))
    assert spec.trainer.seed + spec.trainer.seeds - 1 < 2**63
    cfg = compose_cfg(
        "dataset.num_samples=600",
        "trainer.epochs=1",
        "trainer.seeds=2",
        "trainer.progress=off",
        "regularizers=[dropout]",
        f"trainer.seed={MAX_SEED}",
    )
    record = run_experiment(cfg)
    assert [m["seed"] for m in record["members"]] == [MAX_SEED, MAX_SEED + 1] * 2
    assert all(m["final"]["train_acc"] is not None for m in record["members"])


def test_per_job_checkpoints_are_accepted_by_a_per_job_launcher():
    from regbench import preflight

    assert preflight.check(["-m", "hydra/launcher=basic", "trainer.seed=0,1", "trainer.checkpoint_every=5"]) == 2
    assert preflight.check(["trainer.checkpoint_every=5"]) == 1  # a single run checkpoints as ever


def test_a_cnn_on_table_data_is_refused_by_the_real_command_before_any_folder(tmp_path):
    """The refusal comes from the checks before Hydra starts, not from a job that fails (exit 1, a failure folder)."""
    r = run_cli("run", "-m", "dataset=moons", "model=mlp,cnn", "trainer.progress=off", cwd=tmp_path)
    expected = "regbench: error: model=cnn: needs sequence or image data, got table data; use model=mlp|torch\n"
    assert (r.returncode, r.stderr, r.stdout) == (2, expected, "")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("overrides,key", [(["dataset=mnist", f"dataset.root={LONG}"], "dataset.root")])
def test_a_path_the_file_system_refuses_is_one_line_naming_its_key_wherever_it_is_loaded(compose_cfg, overrides, key):
    # not only the preflight: a job that loads the data (a sweep's, or one run alone) says the same
    from regbench import data
    from regbench.config import validate_config

    with pytest.raises(UsageError) as e:
        data.load(validate_config(compose_cfg(*overrides)).dataset)
    assert str(e.value) == f"{key}={'x' * 60}...(5000 characters): cannot read it (File name too long)"
