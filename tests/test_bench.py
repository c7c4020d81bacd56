"""The benchmark script (bench/bench.py): it runs, and its products ceiling times the products regbench's step does."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from regbench import models
from regbench.models.base import ModelHints
from regbench.models.layers import Context
from regbench.models.mlp import MlpConfig

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "bench.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_products_ceiling_counts_the_steps_products():
    bench = _bench()
    k, b, (n_in, width, _, n_classes) = 3, 7, bench.DIMS
    cfg = MlpConfig(width=width, depth=2)
    model = models.build(cfg, (n_in,), "sequence", n_classes, list(range(k)), ModelHints.plain(k))
    step = model.fast_step()
    x, y = torch.randn(k, b, n_in), torch.randint(0, n_classes, (k, b))
    with FlopCounterMode(display=False) as step_flops:
        step(x, y, Context(seeds=torch.arange(k), train=True))
    with FlopCounterMode(display=False) as ceiling_flops:
        bench.products_ceiling(torch.device("cpu"), k, b, seconds=0.0)  # one warm-up step, one timed
    per_step = b * k * sum(bench.flops_per_example())
    assert step_flops.get_total_flops() == per_step
    assert ceiling_flops.get_total_flops() == 2 * per_step


def test_bench_runs_and_prints_its_figures():
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--steps", "10", "--repeats", "1", "--device", "cpu"]
        + ["--rows", "mlp,cnn-digits,resnet", "--row-steps", "5"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    assert re.search(r"^device cpu, 1 threads, ", out, re.M)  # the default, the same on both sides (bench asserts)
    assert float(re.search(r"^speedup: ([0-9.]+)$", out, re.M).group(1)) > 0
    for side in ("textbook", "regbench"):
        assert re.search(rf"^{side} *: .* s/run, .* of matmul peak\), .*test acc 0\.\d+ ± 0\.\d+$", out, re.M), side
    assert re.search(r"^ceiling  : the step's products alone, [0-9.]+ ms a step, .*% of matmul peak\)$", out, re.M)
    # the suite pins auto to batched (conftest): the choice is printed, for the MLP and for every model row
    assert re.search(r"^regbench: trainer.batching=auto: batched, chunks of 36 of 36$", out, re.M)
    row = re.search(
        r"^row cnn-digits: 1 threads, 5 steps, 8 runs; textbook ([0-9.]+) s/run, regbench ([0-9.]+) s/run "
        r"\(trainer.batching=auto: batched, chunks of 10 of 10; .*\), ratio ([0-9.]+)x "
        r"\(([0-9.]+)x per member trained: 10 members for 8 runs\); test acc",
        out,
        re.M,
    )
    assert row and float(row.group(3)) == pytest.approx(float(row.group(1)) / float(row.group(2)), rel=0.02)
    assert float(row.group(4)) == pytest.approx(float(row.group(3)) * 10 / 8, rel=0.02)
    assert re.search(r"^row resnet: (skipped|1 threads)", out, re.M)  # a placeholder until the model is registered
