"""Find every record below some paths and read them into one DataFrame, a row per member.

Records live in job folders (results/jobs/<run id>); a sweep's folder names its jobs in jobs.jsonl, which is
followed, so `regbench report results/sweeps/<date>/<sweep>` reports exactly that sweep's jobs.

A record that cannot be read (half-written, corrupt, foreign) is skipped with a warning naming it: one bad file in a
large sweep must not hide the rest. A path that does not exist is a usage error; finding nothing is a run error.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from regbench.errors import RunError, UsageError
from regbench.reporting.frame import members_frame
from regbench.results import records, store


def find(paths: Iterable[str | Path]) -> list[Path]:
    """Every result.json at or below the paths, each once, in a stable order."""
    found: dict[Path, None] = {}
    for p in map(Path, paths):
        if not p.exists():
            raise UsageError(f"{p}: no such file or directory")
        if p.is_file():
            found[p.resolve()] = None
        else:
            for f in sorted(p.rglob(records.RESULT)):
                if f.is_file():
                    found[f.resolve()] = None
            # a sweep's folder holds no records itself: its jobs.jsonl names the job folders (results/jobs/<id>)
            for index in sorted(p.rglob(store.SWEEP_INDEX)):
                for folder in store.indexed_jobs(index):
                    if (folder / records.RESULT).is_file():
                        found[(folder / records.RESULT).resolve()] = None
    return list(found)


def warn(message: str) -> None:
    print(f"regbench: warning: {message}", file=sys.stderr)


def load_frame(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One DataFrame over every readable record below `paths`; RunError when there is none."""
    paths = [Path(p) for p in paths]
    frames = []
    for path in find(paths):
        try:
            record = records.load(path)
            frames.append(members_frame(record, source=str(path.parent)))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            reason = f"missing field {err}" if isinstance(err, KeyError) else str(err).removeprefix(f"{path}: ")
            warn(f"skipped {path}: {reason}")
    if not frames:
        where = ", ".join(str(p) for p in paths)
        raise RunError(f"no regbench records (result.json) found under {where}")
    return pd.concat(frames, ignore_index=True)
