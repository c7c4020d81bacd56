"""Published numbers regbench should reproduce, trained here and printed beside the paper's.

  1. MNIST-1D's MLP baseline (Greydanus 2020, "Scaling down deep learning"): about 68% test accuracy with the
     published split (4000 training examples, 1000 test), an MLP 40-100-100-10, Adam at lr 1e-2, batch 100,
     6000 steps, raw (unstandardised) inputs. regbench holds validation out of the training data, so
     val_fraction=0.01 keeps 3960 of the 4000 for training.
  2. Random labels (Zhang et al. 2017, "Understanding deep learning requires rethinking generalization"): a wide
     enough network fits training labels drawn at random (train accuracy far above chance) while its test
     accuracy stays at chance (1/10).
    make reproduce      (or: python bench/reproduce.py --seeds 5)
tests/test_reproduce.py (slow) runs both and checks the claims.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/reproduce.py` from the checkout

from regbench import run  # noqa: E402

MNIST1D_MLP = [
    "dataset=mnist1d", "dataset.val_fraction=0.01", "dataset.standardize=false", "model=mlp", "model.width=100",
    "model.depth=2", "regularizers=[]", "trainer.optimizer=adam", "trainer.lr=0.01", "trainer.batch_size=100",
    "trainer.steps=6000", "trainer.eval_every=50",
]  # fmt: skip
PUBLISHED_MLP = 0.68
RANDOM_LABELS = [
    "dataset=mnist1d", "dataset.label_noise=1.0", "dataset.train_size=1000", "model=mlp", "model.width=512",
    "regularizers=[]", "trainer.lr=0.001", "trainer.epochs=150", "trainer.eval_every=50",
]  # fmt: skip
CHANCE = 0.1


def finals(overrides: list[str], seeds: int, metric: str) -> list[float]:
    record = run(*overrides, f"trainer.seeds={seeds}", "trainer.progress=off", results=None)
    return [m["final"][metric] for m in record["members"]]


def mnist1d_mlp(seeds: int) -> list[float]:
    """The baseline MLP's test accuracy, one per seed."""
    return finals(MNIST1D_MLP, seeds, "test_acc")


def random_labels(seeds: int) -> tuple[list[float], list[float]]:
    """(train accuracies, test accuracies) of a wide MLP trained on random labels."""
    record = run(*RANDOM_LABELS, f"trainer.seeds={seeds}", "trainer.progress=off", results=None)
    return [m["final"]["train_acc"] for m in record["members"]], [m["final"]["test_acc"] for m in record["members"]]


def spread(xs: list[float]) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):.3f} ± {sd:.3f} over {len(xs)} seeds"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s)")
    t0 = time.perf_counter()
    acc = mnist1d_mlp(args.seeds)
    print(
        f"MNIST-1D MLP test accuracy: {spread(acc)}; published ~{PUBLISHED_MLP:.2f} ({time.perf_counter() - t0:.0f} s)"
    )
    t0 = time.perf_counter()
    train, test = random_labels(args.seeds)
    print(
        f"random labels: train accuracy {spread(train)}, test accuracy {spread(test)}; published: train far above "
        f"chance, test at chance ({CHANCE:.2f}) ({time.perf_counter() - t0:.0f} s)"
    )


if __name__ == "__main__":
    main()
