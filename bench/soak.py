"""Soak: does memory stay flat across a long sweep run in one process?

Runs `regbench run -m trainer.seed=range(0,N)` (tiny jobs, Hydra's basic launcher: every job in one process) in a
fresh folder, samples the process's resident memory (VmRSS, Linux /proc) while it runs, and prints the RSS seen
after each block of jobs finished (counted from the sweep's jobs.jsonl), and the growth per 100 jobs after a
warm-up. A leak of a few hundred kB per job shows as tens of MB here. Not a test: numbers depend on the machine.

    python bench/soak.py --jobs 200            # or: make soak
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def finished(folder: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in folder.glob("results/sweeps/*/*/jobs.jsonl"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=200, help="jobs in the sweep (default 200)")
    ap.add_argument("--every", type=int, default=25, help="report RSS after every this many jobs")
    ap.add_argument("--warmup", type=int, default=25, help="jobs before the growth is measured")
    ap.add_argument("--max-growth-mb", type=float, default=None, help="exit 1 if growth per 100 jobs exceeds this")
    args = ap.parse_args()
    if not Path("/proc/self/status").exists():
        print("soak.py reads /proc: Linux only", file=sys.stderr)
        return 2

    regbench = [sys.executable, "-m", "regbench.cli"]
    job = [
        "dataset.num_samples=600",
        "trainer.epochs=2",
        "trainer.seeds=1",
        "trainer.progress=off",
        "regularizers=[l2,dropout]",
    ]
    with tempfile.TemporaryDirectory(prefix="regbench-soak-") as tmp:
        folder = Path(tmp)
        env = {**os.environ, "CI": "true"}
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [*regbench, "run", "-m", f"trainer.seed=range(0,{args.jobs})", *job],
            cwd=folder,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        at: dict[int, float] = {}  # jobs finished -> RSS (MB) when that count was first seen
        peak = 0.0
        while proc.poll() is None:
            rss, n = rss_mb(proc.pid), finished(folder)
            if rss is not None:
                peak = max(peak, rss)
                at.setdefault(n, rss)
            time.sleep(0.05)
        wall = time.perf_counter() - t0
        done = finished(folder)
    if proc.returncode != 0 or done < args.jobs:
        print(f"the sweep failed (exit {proc.returncode}, {done}/{args.jobs} jobs)", file=sys.stderr)
        return 1

    marks = [n for n in range(args.every, args.jobs + 1, args.every)]
    print(f"{args.jobs} jobs in one process, {wall:.0f} s; peak RSS {peak:.0f} MB")
    print("jobs done  RSS (MB)")
    seen = sorted(at)
    for m in marks:
        n = next((k for k in seen if k >= m), None)
        if n is not None:
            print(f"{m:9d}  {at[n]:8.1f}")
    start = next(k for k in seen if k >= args.warmup)
    end = seen[-1]
    growth = (at[end] - at[start]) / max(1, end - start) * 100
    print(f"growth after {start} jobs: {growth:+.1f} MB per 100 jobs ({at[start]:.1f} -> {at[end]:.1f} MB)")
    if args.max_growth_mb is not None and growth > args.max_growth_mb:
        print(f"growth above {args.max_growth_mb} MB per 100 jobs", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
