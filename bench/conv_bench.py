"""The member-batched CNN against a textbook training loop, per member-step, on CPU (1 thread by default).

  (a) textbook: one nn.Module CNN (nn.Conv1d/2d, same shapes as model=cnn) and torch.optim.Adam per run,
      loss.item() every step, batch 100, a test-set evaluation at the end;
  (b) regbench: K baseline members as one population (engine.train_population, fast path), one evaluation at the end.
Prints seconds per member-step of each (the best of --repeats turns) and their ratio, per dataset and K. Times are
the process's CPU time, not wall time: on a shared machine waiting for a core is not the code's cost.
    python bench/conv_bench.py --steps 200 --ks 4 12 36 --datasets mnist1d digits [--profile]
    python bench/conv_bench.py --products    (the weight gradient's two product layouts at the CNN's shapes)
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from torch import nn

from regbench import data
from regbench.config import validate_config
from regbench.paths import config_dir
from regbench.train.engine import train_population
from regbench.train.population import members_for


def textbook_model(shape, n_classes, dims, channels=25, depth=3, kernel=5, stride=2):
    conv = nn.Conv1d if dims == 1 else nn.Conv2d
    c_in, spatial, layers = (1 if dims == 1 else shape[0]), list(shape[-dims:]), []
    for _ in range(depth):
        layers += [conv(c_in, channels, kernel, stride, kernel // 2), nn.ReLU()]
        spatial = [(s + 2 * (kernel // 2) - kernel) // stride + 1 for s in spatial]
        c_in = channels
    feats = channels * int(torch.tensor(spatial).prod())
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(feats, n_classes))


def textbook(splits, dims, steps, batch, seed) -> float:
    """Seconds for one run of `steps` steps."""
    torch.manual_seed(seed)
    model = textbook_model(splits.input_shape, splits.n_classes, dims)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = splits.x_train, splits.y_train
    if dims == 1:
        x = x.unsqueeze(1)
    n, step = len(y), 0
    t0 = time.process_time()
    while step < steps:
        perm = torch.randperm(n)
        for i in range(n // batch):
            if step == steps:
                break
            idx = perm[i * batch : (i + 1) * batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()
            step += 1
    model.eval()
    with torch.no_grad():
        xt = splits.x_test.unsqueeze(1) if dims == 1 else splits.x_test
        (model(xt).argmax(1) == splits.y_test).float().mean().item()
    return time.process_time() - t0


def spec_for(dataset, k, steps):
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=[
            f"dataset={dataset}", "model=cnn", "regularizers=[]", f"trainer.seeds={k}", f"trainer.steps={steps}",
            "trainer.eval_every=100000", "trainer.progress=off", "trainer.device=cpu", "trainer.threads=1",
        ])  # fmt: skip
    return validate_config(cfg)


def population(spec, splits) -> float:
    t0 = time.process_time()
    train_population(splits, spec.model, spec.trainer, members_for(spec), "cpu")
    return time.process_time() - t0


def weight_products(k: int = 10, batch: int = 100, channels: int = 25, repeats: int = 5) -> None:
    """The two layouts of a member-batched weight gradient, P^T G ([K, L, M] @ [K, M, C]: autograd's, for
    baddbmm) and G^T P ([K, C, M] @ [K, M, L]: layers.ConvProduct's where L >= C), at the MNIST-1D CNN's layers
    (M = batch * output positions, L = taps * input channels). Operands come from a rotation of 8 fresh pairs, as
    a training step's do not sit in the cache; ms per product, the median of `repeats` turns."""
    for name, (m, fan_in) in {
        "conv 1": (batch * 20, 5),
        "conv 2": (batch * 10, 125),
        "conv 3": (batch * 5, 125),
    }.items():
        pairs = [(torch.randn(k, m, fan_in), torch.randn(k, m, channels)) for _ in range(8)]
        times = {"P^T G": [], "G^T P": []}
        for _ in range(repeats):
            for layout in times:
                t0 = time.perf_counter()
                for p, g in pairs * 5:
                    torch.bmm(p.transpose(1, 2), g) if layout == "P^T G" else torch.bmm(g.transpose(1, 2), p)
                times[layout].append((time.perf_counter() - t0) / (len(pairs) * 5))
        print(f"{name} [K={k}, M={m}, L={fan_in}, C={channels}]: "
              + ", ".join(f"{lay} {sorted(t)[len(t) // 2] * 1e3:.3f} ms" for lay, t in times.items()))  # fmt: skip


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--ks", type=int, nargs="+", default=[4, 12, 36])
    ap.add_argument("--datasets", nargs="+", default=["mnist1d", "digits"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--profile", action="store_true", help="profile one population run per dataset at the last K")
    ap.add_argument("--products", action="store_true", help="time the weight gradient's two product layouts, only")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.threads} threads, torch {torch.__version__}, {args.steps} steps, batch 100")
    if args.products:
        return weight_products()
    for name in args.datasets:
        splits = None
        for k in args.ks:
            spec = spec_for(name, k, args.steps)
            if splits is None:
                splits = data.load(spec.dataset)
                dims = 1 if splits.kind == "sequence" else 2
            tb, rb = [], []
            for _ in range(args.repeats):  # take turns: a drifting machine is the same machine for both
                # K textbook runs against a population of K: the same work, timed over the same stretch of time
                tb.append(sum(textbook(splits, dims, args.steps, 100, r) for r in range(k)) / (args.steps * k))
                rb.append(population(spec, splits) / (args.steps * k))
            tb_s, rb_s = min(tb), min(rb)
            print(f"{name:8s} K={k:3d}: textbook {tb_s * 1e3:6.3f} ms/step, population {rb_s * 1e3:6.3f} "
                  f"ms/member-step, ratio {tb_s / rb_s:5.2f}", flush=True)  # fmt: skip
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU]) as prof:
                population(spec, splits)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))


if __name__ == "__main__":
    main()
