"""regbench against a textbook training loop, on the same sweep, in one process.

  (a) textbook: one nn.Module and one torch.optim.Adam per run, loss.item() every step, runs one after another,
      then the loss and accuracy on the train, validation and test splits (what regbench reports);
  (b) regbench: the same runs as sweep jobs handed to its batched launcher's core (regbench.sweep.train_jobs):
      one population, baselines shared.
Sweep: MNIST-1D, MLP 40-100-100-10, batch 100, a fixed number of Adam steps, 8 regularizer settings x 4 seeds.
Prints seconds per run, `speedup: <ratio>`, achieved GFLOP/s against an fp32 matmul peak measured here, peak
memory, both sides' mean test accuracy, and the step's products timed alone: the ceiling on the share of the
peak, what is left to the element-wise work. The sides take turns (textbook blocks, regbench sweeps between them,
the matmul peak and the products before each block), so a machine whose speed drifts is the same machine for both.
Then the model rows (bench/rows.py: the CNN on MNIST-1D and digits, a ResNet, a user's module through torch.func),
each a line `row NAME: ... ratio <ratio>x`; --rows chooses which rows run (mlp is the sweep above).
    make bench    (or: python bench/bench.py --steps 500 --device cuda)
"""

from __future__ import annotations

import argparse
import math
import resource
import statistics
import time

import torch
from hydra import compose, initialize_config_dir
from torch import nn

from regbench import data, sweep
from regbench.config import validate_config
from regbench.paths import config_dir
from regbench.train import batching

try:
    import rows  # beside this script: python bench/bench.py puts bench/ on the path
except ImportError:  # loaded by path (tests/test_bench.py): registered first, as dataclasses look their module up
    import importlib.util
    import sys
    from pathlib import Path

    _spec = importlib.util.spec_from_file_location("rows", Path(__file__).with_name("rows.py"))
    rows = sys.modules["rows"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(rows)

SETTINGS = [  # (regularizer, override of its strength) x 8
    ("l1", "strength", 1e-5), ("l1", "strength", 1e-4),
    ("l2", "strength", 1e-5), ("l2", "strength", 1e-4), ("l2", "strength", 1e-3),
    ("dropout", "p", 0.1), ("dropout", "p", 0.2), ("dropout", "p", 0.3),
]  # fmt: skip
SEEDS = 4
DIMS = (40, 100, 100, 10)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def seconds_per_call(fn, device, seconds, warmup=1, batch=1) -> float:
    """fn's time per call, calling it for at least `seconds` (and at least once) after `warmup` calls, synchronising
    the device after every `batch` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    reps, t0 = 0, time.perf_counter()
    while reps == 0 or time.perf_counter() - t0 < seconds:
        for _ in range(batch):
            fn()
        reps += batch
        sync(device)
    return (time.perf_counter() - t0) / reps


def matmul_peak(device, n=1024, seconds=1.0) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    return 2 * n**3 / seconds_per_call(lambda: a @ b, device, seconds, warmup=3, batch=4) / 1e9


def products_ceiling(device, members, batch, seconds=1.0) -> float:
    """Seconds a training step of `members` members spends in its matrix products alone: the forward and backward
    products of MLP.train_step, in its layouts, back to back on random data, with none of the step's element-wise
    work (bias, ReLU, dropout, softmax, Adam, penalties). A step with these products, its element-wise work fused
    or not, cannot be faster: the share of the matmul peak this gives is that step's ceiling on this machine, and
    the distance from it to regbench's share is what the element-wise work and the host cost. Counts the products
    flops_per_run counts (a test checks both against the FLOPs of MLP.train_step)."""
    k, b, dims = members, batch, DIMS
    w = [torch.randn(k, o, i, device=device) for i, o in zip(dims, dims[1:])]  # [K, out, in], as BatchedLinear
    acts = [torch.randn(k, b, d, device=device) for d in dims[:-1]]  # each layer's input, [K, B, in]
    grads = [torch.randn(k, b, d, device=device) for d in dims[1:-1]]  # hidden layers' output gradients
    logits, dlogits = torch.empty(k, dims[-1], b, device=device), torch.randn(k, dims[-1], b, device=device)
    gw = [torch.empty_like(x) for x in w]
    bias = torch.zeros(k, dims[-1], 1, device=device)

    def step():
        for i in range(len(w) - 1):  # the hidden layers: [K, B, in] @ [K, in, out]
            torch.bmm(acts[i], w[i].transpose(1, 2), out=acts[i + 1])
        torch.baddbmm(bias, w[-1], acts[-1].transpose(1, 2), out=logits)  # the output layer as [K, C, B]
        torch.bmm(dlogits, acts[-1], out=gw[-1])
        g = torch.bmm(dlogits.transpose(1, 2), w[-1], out=grads[-1])
        for i in range(len(w) - 2, -1, -1):
            torch.bmm(g.transpose(1, 2), acts[i], out=gw[i])
            if i > 0:
                g = torch.bmm(g, w[i], out=grads[i - 1])

    return seconds_per_call(step, device, seconds)


def flops_per_example() -> tuple[int, int]:
    """(forward, backward) FLOPs of one training example through DIMS."""
    fwd = 2 * sum(i * o for i, o in zip(DIMS, DIMS[1:]))
    return fwd, fwd + 2 * sum(i * o for i, o in zip(DIMS[1:], DIMS[2:]))  # weight grads, input grads past layer 1


def flops_per_run(steps, batch, n_eval) -> float:
    fwd, bwd = flops_per_example()
    return steps * batch * (fwd + bwd) + n_eval * fwd


def textbook_run(splits, reg, key, value, seed, steps, batch, device) -> float:
    torch.manual_seed(seed)
    p = value if reg == "dropout" else 0.0
    layers = []
    for i, (fi, fo) in enumerate(zip(DIMS, DIMS[1:])):
        layers.append(nn.Linear(fi, fo))
        if i < len(DIMS) - 2:
            layers += [nn.ReLU(), nn.Dropout(p)]
    model = nn.Sequential(*layers).to(device)
    return rows.textbook_train(model, splits, reg, value, steps, batch, device)


def peak_memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def mean_std(values):
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def threads(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n}: must be at least 1")
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument(
        "--threads", type=threads, default=1, help="torch CPU threads, the same on both sides (regbench's default: 1)"
    )
    ap.add_argument("--repeats", type=int, default=3, help="regbench sweeps, taking turns with textbook blocks")
    ap.add_argument(
        "--rows", default="mlp," + ",".join(rows.ROWS), help=f"comma-separated rows: mlp,{','.join(rows.ROWS)}"
    )
    ap.add_argument("--row-steps", type=int, default=300, help="Adam steps of the model rows (the ResNet's: a fifth)")
    ap.add_argument(
        "--row-repeats", type=int, default=1, help="regbench sweeps of a model row, between textbook blocks"
    )
    ap.add_argument(
        "--batching", default="auto", choices=["auto", "batched", "loop"], help="regbench's trainer.batching"
    )
    args = ap.parse_args()
    chosen = [r for r in args.rows.split(",") if r]
    unknown = [r for r in chosen if r != "mlp" and r not in rows.ROWS]
    if unknown:
        ap.error(f"--rows: unknown row {unknown[0]}; known: mlp,{','.join(rows.ROWS)}")
    choice = args.device if args.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(choice)
    torch.set_num_threads(args.threads)  # the textbook side's; regbench's sweep sets trainer.threads to the same
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    if "mlp" in chosen:
        mlp_row(args, device)
    rest = [r for r in chosen if r != "mlp"]
    rows.run_rows(rest, args.row_steps, args.batch, device, args.threads, args.batching, args.row_repeats)


def mlp_row(args, device):
    runs = len(SETTINGS) * SEEDS
    members = runs + SEEDS  # regbench's population: the runs and one shared baseline per seed
    print(f"sweep: MNIST-1D, MLP {'-'.join(map(str, DIMS))}, batch {args.batch}, {args.steps} Adam steps, "
          f"{len(SETTINGS)} settings x {SEEDS} seeds = {runs} runs")  # fmt: skip

    peak = matmul_peak(device)
    print(f"fp32 matmul peak (1024x1024): {peak:.1f} GFLOP/s")

    jobs = []
    with initialize_config_dir(config_dir(), version_base="1.3"):
        for n, (reg, key, value) in enumerate(SETTINGS):
            cfg = compose("config", overrides=[
                f"regularizers=[{reg}]", f"regularizers.{reg}.{key}={value}", f"trainer.seeds={SEEDS}",
                f"trainer.steps={args.steps}", f"trainer.batch_size={args.batch}", "trainer.eval_every=100000",
                f"trainer.device={device.type}", "trainer.progress=off", f"trainer.threads={args.threads}",
                f"trainer.batching={args.batching}",
            ])  # fmt: skip
            jobs.append(sweep.Job(n, cfg, validate_config(cfg)))
    splits = data.load(jobs[0].spec.dataset).to(device)
    n_eval = sum(splits.sizes().values())
    work = flops_per_run(args.steps, args.batch, n_eval)
    pool, _, plain = sweep.pool(jobs)
    size = batching.chunk_size(splits, jobs[0].spec.model, jobs[0].spec.trainer, pool[:plain], device)  # cached
    print(f"regbench: trainer.batching={args.batching}: {batching.describe(size, plain)}, chunks of {size} of {plain}")

    # The two sides take turns: textbook runs in blocks, regbench's whole sweep between them, `repeats` times. The
    # machine's speed drifts (by up to 20% from minute to minute on a shared virtual machine), and a side timed
    # only in the first minute and one timed only in the second would compare two machines.
    runs_list = [(reg, key, value, seed) for reg, key, value in SETTINGS for seed in range(SEEDS)]
    blocks = [runs_list[i :: args.repeats + 1] for i in range(args.repeats + 1)]
    tb_time, rb_times, acc_tb, acc_rb, peak_mb = 0.0, [], [], None, {"textbook": 0.0, "regbench": 0.0}
    peaks, ceilings = [peak], []
    for n, block in enumerate(blocks):
        if n:
            peaks.append(matmul_peak(device))  # the peak drifts too: the share is taken of its mean
        ceilings.append(products_ceiling(device, members, args.batch))
        for side in ("textbook", "regbench") if n < args.repeats else ("textbook",):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            sync(device)
            t0 = time.perf_counter()
            if side == "textbook":
                acc_tb += [textbook_run(splits, *run, args.steps, args.batch, device) for run in block]
            else:
                records = dict(sweep.train_jobs(jobs, budget_bytes=8 << 30))
                regularized = [m for r in records.values() for m in r["members"] if m["arm"] != "baseline"]
                accs = [m["final"]["test_acc"] for m in regularized]
                assert acc_rb is None or accs == acc_rb, "regbench's repetitions must give the same numbers"
                assert torch.get_num_threads() == args.threads, "both sides must run on the same threads"
                acc_rb = accs
            sync(device)
            dt = time.perf_counter() - t0
            if side == "textbook":
                tb_time += dt
            else:
                rb_times.append(dt)
            peak_mb[side] = max(peak_mb[side], peak_memory_mb(device))

    peak = statistics.mean(peaks)
    print(f"regbench repetitions: {', '.join(f'{t:.2f}' for t in rb_times)} s; "
          f"matmul peak over the run: {', '.join(f'{p:.0f}' for p in peaks)} GFLOP/s, mean {peak:.1f}")  # fmt: skip
    tb, rb = tb_time / runs, statistics.mean(rb_times) / runs
    # regbench also trains the shared baselines, and is charged for them
    for side, per_run, trained, accs in (("textbook", tb, runs, acc_tb), ("regbench", rb, members, acc_rb)):
        gflops = work * trained / (per_run * runs) / 1e9
        acc_m, acc_s = mean_std(accs)
        # CPU: the process's peak resident memory, which cannot be reset between the sides
        memory = f"{'peak memory' if device.type == 'cuda' else 'process peak RSS'} {peak_mb[side]:.0f} MB"
        print(f"{side:9s}: {per_run * runs:7.2f} s total, {per_run:.4f} s/run, {gflops:6.1f} GFLOP/s "
              f"({gflops / peak:.1%} of matmul peak), {memory}, test acc {acc_m:.4f} ± {acc_s:.4f}")  # fmt: skip
    # the products alone, as regbench's step lays them out: a step doing them cannot beat this share here
    step_s = statistics.mean(ceilings)
    gflops = args.batch * sum(flops_per_example()) * members / step_s / 1e9
    print(f"ceiling  : the step's products alone, {step_s * 1e3:.2f} ms a step, {gflops:6.1f} GFLOP/s "
          f"({gflops / peak:.1%} of matmul peak)")  # fmt: skip
    diff = statistics.mean(acc_rb) - statistics.mean(acc_tb)
    noise = math.sqrt(statistics.variance(acc_tb) / len(acc_tb) + statistics.variance(acc_rb) / len(acc_rb))
    print(f"test acc difference (regbench - textbook): {diff:+.4f}, seed noise (std error) {noise:.4f}")
    print(f"speedup: {tb / rb:.2f}")


if __name__ == "__main__":
    main()
