"""Records a job leaves in its folder: history.csv (member x evaluation) and result.json (one entry per member).

Both are written to a temporary file in the same folder, flushed to disk and renamed into place, and result.json
goes last: a folder holding result.json holds a complete record, whatever moment the process was killed at.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

FORMAT = "regbench.result/1"
RESULT = "result.json"
HISTORY = "history.csv"


def atomic_write(path: Path, content: str | bytes) -> None:
    """Write to a temporary file beside `path`, fsync it, rename it over `path`: readers see old or new, whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600: a shared results folder must stay readable
        with os.fdopen(fd, "wb") as f:
            f.write(content.encode("utf-8") if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    # the rename itself reaches the disk only when the folder's entry does
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
