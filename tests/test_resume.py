"""Nothing lost, for real: failing jobs, killed processes, concurrent sweeps and repeated runs, in subprocesses."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from regbench.results import records, store

from .conftest import TINY, run_cli

ONE = [*TINY, "trainer.seeds=1", "regularizers=[]"]

# `regbench` with a fault injected into the job of seed 1 only: the same CLI and launcher, one job raising.
FAULTY = """
import sys
from regbench import job
real = job.run_experiment
def flaky(cfg, spec, **kw):
    if spec.trainer.seed == 1:
        raise RuntimeError("injected fault")
    return real(cfg, spec, **kw)
job.run_experiment = flaky
from regbench.cli import app
app()
"""


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "REGBENCH_DEBUG")}
    env["CI"] = "true"
    return env


def _popen(args, cwd, script=None):
    head = ["-c", script] if script else ["-m", "regbench.cli"]
    return subprocess.Popen(
        [sys.executable, *head, *args], cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _records(cwd: Path) -> list[Path]:
    return sorted(cwd.glob("results/jobs/*/result.json"))


def test_a_failing_job_is_recorded_the_sweep_goes_on_and_a_rerun_does_only_what_is_missing(tmp_path):
    # the basic launcher: the fault is injected into the per-job path (regbench's launcher trains jobs together)
    sweep = ["run", "-m", "hydra/launcher=basic", "trainer.seed=0,1,2", *ONE]
    p = _popen(sweep, tmp_path, FAULTY)
    _, err = p.communicate(timeout=240)
    assert p.returncode == 1
    lines = err.strip().splitlines()
    assert lines[-2] == "regbench: 3 jobs: 2 trained, 1 failed"
    m = re.fullmatch(r"regbench: failed: (\S+): RuntimeError: injected fault", lines[-1])
    assert m, lines[-1]
    assert "Traceback" not in err
    failed = Path(m.group(1))
    failure = json.loads((failed / store.FAILURE).read_text())
    assert (failure["error"], failure["message"]) == ("RuntimeError", "injected fault")
    assert "injected fault" in (failed / store.TRACEBACK).read_text()
    assert not (failed / records.RESULT).exists()
    assert len(_records(tmp_path)) == 2

    again = run_cli(*sweep, cwd=tmp_path)  # the fault is gone: only the failed job trains
    assert again.returncode == 0, again.stderr
    assert again.stderr.strip().splitlines()[-1] == "regbench: 3 jobs: 1 trained, 2 skipped"
    assert not (failed / store.FAILURE).exists() and store.is_complete(failed)
    index = [json.loads(line) for p in tmp_path.glob("results/sweeps/*/*/jobs.jsonl") for line in p.open()]
    assert sorted(e["status"] for e in index) == ["failed", "skipped", "skipped", "trained", "trained", "trained"]

    forced = run_cli("run", "--force", "-m", "trainer.seed=0,1,2", *ONE, cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert forced.stderr.strip().splitlines()[-1] == "regbench: 3 jobs: 3 trained"


@pytest.mark.slow
def test_sigkill_mid_run_leaves_no_record_and_the_rerun_resumes_from_the_checkpoint(tmp_path):
    cmd = ["run", *ONE, "trainer.epochs=200"]
    p = _popen([*cmd, "trainer.checkpoint_every=1"], tmp_path)
    deadline = time.monotonic() + 180
    while not list(tmp_path.glob("results/jobs/*/checkpoint.pt")) and time.monotonic() < deadline:
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=60)
    (folder,) = tmp_path.glob("results/jobs/*")
    assert (folder / store.CHECKPOINT).is_file()
    assert not (folder / records.RESULT).exists() and not store.is_complete(folder)

    # checkpoint_every is not part of the run id: fewer saves, same job, same folder
    r = run_cli(*cmd, "trainer.checkpoint_every=1000", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stderr
    record = records.load(folder / records.RESULT)
    assert record["members"][0]["epochs"] == 200
    assert not (folder / store.CHECKPOINT).exists()  # a finished job keeps its record, not its checkpoint


WRITER = """
import sys
from regbench.results import records
record = {"format": "regbench.result/1", "members": [{"pad": "x" * 200}] * 5000, "history": [{"a": 1}] * 20000}
i = 0
while True:
    record["i"] = i
    records.save(record, sys.argv[1])
    i += 1
    print(i, flush=True)
"""


def test_sigkill_mid_write_never_leaves_a_record_that_reads_as_complete(tmp_path):
    rng = random.Random(0)
    for trial in range(6):
        folder = tmp_path / f"t{trial}"
        p = subprocess.Popen([sys.executable, "-c", WRITER, str(folder)], stdout=subprocess.PIPE, text=True)
        if trial % 2:
            p.stdout.readline()  # at least one record written: killed while rewriting it
        time.sleep(rng.uniform(0.0, 0.3))
        p.send_signal(signal.SIGKILL)
        p.communicate(timeout=60)
        path = folder / records.RESULT
        if path.exists():
            assert len(records.load(path)["members"]) == 5000  # whole, never a prefix
        else:
            assert trial % 2 == 0 and not store.is_complete(folder)


# `regbench` noting every member it trains (batched or alone) in the file named by argv[1], then running as usual.
COUNTING = """
import sys
from regbench.train import batching
log = sys.argv.pop(1)
def counting(real):
    def train_population(splits, model_cfg, trainer, members, *a, **kw):
        with open(log, "a") as f:
            f.writelines(f"{m.arm} {m.seed}\\n" for m in members)
        return real(splits, model_cfg, trainer, members, *a, **kw)
    return train_population
batching.train_population = counting(batching.train_population)  # both cores train through it
from regbench.cli import app
app()
"""


@pytest.mark.slow
def test_two_identical_sweeps_at_once_share_no_sweep_folder_and_train_each_job_once(tmp_path):
    # enough epochs that the two overlap: the second must wait for the first's locks, not train the same jobs
    sweep = ["run", "-m", "trainer.seed=0,1,2", *ONE, "trainer.epochs=400"]
    logs = [tmp_path / f"trained{n}.txt" for n in range(2)]
    procs = [_popen([str(log), *sweep], tmp_path, script=COUNTING) for log in logs]
    errs = [p.communicate(timeout=240)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert len(list(tmp_path.glob("results/sweeps/*/*"))) == 2
    assert len(_records(tmp_path)) == 3
    trained = [line for log in logs if log.exists() for line in log.read_text().splitlines()]
    assert sorted(trained) == ["baseline 0", "baseline 1", "baseline 2"], errs  # each job's one member, once
    outcomes = [json.loads(line)["status"] for index in tmp_path.glob("results/sweeps/*/*/jobs.jsonl")
                for line in index.read_text().splitlines()]  # fmt: skip
    assert sorted(outcomes) == ["skipped"] * 3 + ["trained"] * 3
    assert not list(tmp_path.glob("results/jobs/*/.lock"))


@pytest.mark.slow
def test_same_config_and_seed_give_bit_identical_metrics_across_processes(tmp_path):
    metrics = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        r = run_cli("run", *TINY, cwd=tmp_path / name)
        assert r.returncode == 0, r.stderr
        (path,) = _records(tmp_path / name)
        metrics.append([m["final"] for m in json.loads(path.read_text())["members"]])
        metrics.append((path.parent / records.HISTORY).read_text())
    assert metrics[0] == metrics[2] and metrics[1] == metrics[3]


@pytest.mark.skipif(torch.cuda.is_available(), reason="provokes its error by asking for a GPU")
@pytest.mark.parametrize("flag", ["--debug", None])
def test_a_traceback_only_with_debug(tmp_path, flag):
    args = [flag] if flag else []
    r = run_cli(*args, "run", "trainer.device=cuda", cwd=tmp_path)
    if flag is None:
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    else:
        assert "Traceback" in r.stderr
    assert r.returncode == 1 and not (tmp_path / "results").exists()


@pytest.mark.slow  # test_resilience checks the same reading in-process; this is the command end to end
def test_a_corrupt_record_is_not_taken_for_complete_the_job_runs_again(tmp_path):
    assert run_cli("run", *ONE, cwd=tmp_path).returncode == 0
    (path,) = _records(tmp_path)
    path.write_text(path.read_text()[:100])  # as a copy cut short would leave it
    r = run_cli("run", *ONE, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "records: " in r.stderr and "skipped" not in r.stderr
    assert store.is_complete(path.parent)
