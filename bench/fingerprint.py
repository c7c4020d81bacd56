"""A hash of the numbers a broad sweep produces: run it before and after a change meant to keep them identical.

Every regularizer alone at the singles preset's strengths, the benchmark's settings and two combinations, on the
MLP (MNIST-1D) and the CNN (digits), through the batched launcher's core, at a reduced budget; plus one job run
alone (run_experiment). Hashes every member's final metrics and its whole evaluation history, bit for bit
(float.hex), so any change to a member's numbers changes the hash.
    make fingerprint    (or: python bench/fingerprint.py --steps 300)
"""

from __future__ import annotations

import argparse
import hashlib
import json

import torch
from hydra import compose, initialize_config_dir

from regbench import sweep
from regbench.config import validate_config
from regbench.experiment import run_experiment
from regbench.paths import config_dir

# (regularizer, {key: value}): cells like the singles preset's, written out so that moving defaults cannot move them
CELLS = [
    ("l1", {"strength": 1e-5}), ("l1", {"strength": 1e-3}),
    ("l2", {"strength": 1e-5}), ("l2", {"strength": 1e-3}),
    ("elastic_net", {"strength": 1e-4}),
    ("weight_decay", {"strength": 1e-3}), ("weight_decay", {"strength": 1e-1}),
    ("dropout", {"p": 0.1}), ("dropout", {"p": 0.5}),
    ("augment", {"strength": 0.5}),
    ("label_smoothing", {"epsilon": 0.1}),
    ("mixup", {"alpha": 0.2}),
    ("cutout", {"size": 0.25}),
    ("max_norm", {"c": 1.0}), ("max_norm", {"c": 4.0}),
    ("gaussian_noise", {"std": 0.1}),
    ("early_stopping", {"patience": 2}), ("early_stopping", {"patience": 10}),
    ("batch_norm", {}),
]  # fmt: skip
COMBOS = [["l2", "dropout"], ["mixup", "max_norm", "early_stopping"]]


def overrides(regs: list[str], values: dict, base: list[str]) -> list[str]:
    return [f"regularizers=[{','.join(regs)}]", *(f"regularizers.{regs[0]}.{k}={v}" for k, v in values.items()), *base]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--verbose", action="store_true", help="print each job's hash too")
    args = ap.parse_args()
    torch.set_num_threads(1)
    common = ["trainer.seeds=2", f"trainer.steps={args.steps}", "trainer.eval_every=2", "trainer.progress=off",
              "trainer.device=cpu", "trainer.threads=1", "trainer.batching=batched"]  # fmt: skip
    setups = {
        "mlp": ["dataset=mnist1d", "dataset.num_samples=1000", "model=mlp", *common],
        "cnn": ["dataset=digits", "model=cnn", *common],
    }
    records = {}
    with initialize_config_dir(config_dir(), version_base="1.3"):
        for name, base in setups.items():
            jobs = []
            for regs, values in [([r], v) for r, v in CELLS] + [(c, {}) for c in COMBOS]:
                cfg = compose("config", overrides=overrides(regs, values, base))
                jobs.append(sweep.Job(len(jobs), cfg, validate_config(cfg)))
            for n, record in sweep.train_jobs(jobs, budget_bytes=8 << 30):
                records[f"{name}/{n}"] = record
        cfg = compose("config", overrides=overrides(["l2", "dropout"], {}, setups["mlp"]))
        records["alone"] = run_experiment(cfg, validate_config(cfg))

    def numbers(record):
        members = [[m["member"], m["arm"], m["seed"], m["final"], m.get("stop_epoch"), m.get("best_epoch")]
                   for m in record["members"]]  # fmt: skip
        history = [[r["member"], r["epoch"], r["step"], *(r[c] for c in sorted(r) if c.endswith(("acc", "loss")))]
                   for r in record["history"]]  # fmt: skip
        text = json.dumps([members, history], default=str,
                          sort_keys=True, allow_nan=True).encode()  # fmt: skip
        floats = [float(v).hex() for m in record["members"] for v in m["final"].values() if v is not None]
        return hashlib.sha256(text + " ".join(floats).encode()).hexdigest()

    total = hashlib.sha256()
    for key in sorted(records):
        h = numbers(records[key])
        total.update(f"{key}:{h}\n".encode())
        if args.verbose:
            print(key, h[:16])
    print(f"jobs: {len(records)}, torch {torch.__version__}")
    print(f"fingerprint: {total.hexdigest()}")


if __name__ == "__main__":
    main()
