"""Records a job leaves in its folder: history.csv (member x evaluation) and result.json (one entry per member).

Both are written to a temporary file in the same folder, flushed to disk and renamed into place, and result.json
goes last: a folder holding result.json holds a complete record, whatever moment the process was killed at.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from regbench.atomic import atomic_write

FORMAT = "regbench.result/1"
RESULT = "result.json"
HISTORY = "history.csv"


def history_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()


def save(result: dict, folder: Path) -> Path:
    """Write history.csv then result.json into `folder`; returns the result.json path."""
    folder = Path(folder)
    atomic_write(folder / HISTORY, history_csv(result["history"]))
    record = {k: v for k, v in result.items() if k != "history"}
    atomic_write(folder / RESULT, json.dumps(record, indent=2, default=str) + "\n")
    return folder / RESULT


def load(path: Path) -> dict:
    """Read one result.json, refusing anything that is not a complete regbench record."""
    with open(path, encoding="utf-8") as f:
        record = json.load(f)
    if not isinstance(record, dict) or record.get("format") != FORMAT or not isinstance(record.get("members"), list):
        raise ValueError(f"{path}: not a complete {FORMAT} record")
    return record
