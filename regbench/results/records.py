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
# trainer.predictions=true: each member's test-split log-probabilities, float16 [N, C] under "member_<i>", and the
# test labels under "labels" (numpy's .npz: compact, and readable without regbench)
PREDICTIONS = "predictions.npz"


def history_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()


def predictions_npz(members: list[dict], labels) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    arrays = {f"member_{m['member']}": m["predictions"] for m in members}
    np.savez_compressed(buf, labels=np.asarray(labels, dtype=np.int64), **arrays)
    return buf.getvalue()


def save(result: dict, folder: Path) -> Path:
    """Write history.csv (and predictions.npz, when members carry predictions) then result.json into `folder`;
    returns the result.json path."""
    folder = Path(folder)
    atomic_write(folder / HISTORY, history_csv(result["history"]))
    record = {k: v for k, v in result.items() if k not in ("history", "test_labels")}
    if any("predictions" in m for m in result["members"]):
        atomic_write(folder / PREDICTIONS, predictions_npz(result["members"], result["test_labels"]))
        record["members"] = [{k: v for k, v in m.items() if k != "predictions"} for m in result["members"]]
        record["predictions"] = PREDICTIONS
    atomic_write(folder / RESULT, json.dumps(record, indent=2, default=str) + "\n")
    return folder / RESULT


def load(path: Path) -> dict:
    """Read one result.json, refusing anything that is not a complete regbench record."""
    with open(path, encoding="utf-8") as f:
        record = json.load(f)
    if not isinstance(record, dict) or record.get("format") != FORMAT or not isinstance(record.get("members"), list):
        raise ValueError(f"{path}: not a complete {FORMAT} record")
    return record
