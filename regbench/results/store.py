"""Where a job's records live and whether they are complete: the pieces resume, failure and locking are made of.

A job's folder is named by its run id, a stable hash of the validated job config (without keys that only change
how a run is shown or saved; with the content of a user's data file), so re-running a sweep finds the folders of
the jobs it already finished. These are small functions on purpose: a job's lifecycle (`regbench.job`) and a
launcher that trains many jobs as one population both call them.

    job_dir(root, spec)        results/jobs/<run id>
    is_complete(folder, id)    a loadable result.json whose run id matches
    lock(folder)               an exclusive lock held while a job trains; a second process waits, then skips
    write_failure(folder, ..)  failure.json (+ failure.txt, the traceback); never named result.json
    append_line(path, entry)   one outcome line in a sweep's jobs.jsonl or the command's status file
    indexed_jobs(jobs.jsonl)   the job folders a sweep ran (`regbench report <sweep folder>` follows them)
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import logging
import os
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

from regbench.atomic import atomic_write
from regbench.config import NOT_NUMBERS
from regbench.results import records

log = logging.getLogger("regbench")

JOBS = "jobs"
FAILURE = "failure.json"
TRACEBACK = "failure.txt"
CHECKPOINT = "checkpoint.pt"  # with several chunks (train/batching.py) also checkpoint.members-A-B.pt
LOCK = ".lock"
SWEEP_INDEX = "jobs.jsonl"  # in a sweep's folder: one line per job run by the sweep, naming its folder
# Trainer keys that never change a job's numbers (marked numbers=False on TrainerConfig): out of the run id.
NOT_IN_RUN_ID = NOT_NUMBERS
# Dataset fields naming a user's file (csv and npz: path, test_path): the file's content goes into the run id, so
# editing it in place trains again instead of finding the old record complete.
FILE_FIELDS = ("path", "file")
_digests: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256: the run id is asked for often


def _plain(obj):
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else dict(obj)


def _hashed(obj) -> dict:
    """A config as its run id sees it: a field added later (schema.param's `later`) only when it is not at its
    default."""
    plain = _plain(obj)
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            if f.metadata.get("later") and plain[f.name] == f.default:
                del plain[f.name]
    return plain


def file_digest(path: str) -> str | None:
    """SHA-256 of a file's bytes (None if it cannot be read), hashed again only when its size or mtime changes."""
    p = os.path.abspath(os.path.expanduser(path))
    try:
        st = os.stat(p)
        key = (p, st.st_size, st.st_mtime_ns)
        if key not in _digests:
            h = hashlib.sha256()
            with open(p, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            _digests[key] = h.hexdigest()
        return _digests[key]
    except OSError:
        return None


def identity(spec) -> dict:
    """What a job computes, as plain data: the input of its run id (stored in its record too)."""
    trainer = {k: v for k, v in _hashed(spec.trainer).items() if k not in NOT_IN_RUN_ID}
    dataset = _hashed(spec.dataset)
    ident = {
        "dataset": dataset,
        "model": _hashed(spec.model),
        # a list, not a dict: the composed order decides the order transforms apply in
        "regularizers": [[name, _hashed(c)] for name, c in spec.regularizers.items()],
        "trainer": trainer,
    }
    files = {
        k: file_digest(v)
        for k, v in dataset.items()
        if isinstance(v, str) and v and any(k == f or k.endswith(f"_{f}") for f in FILE_FIELDS)
    }
    if files:  # only then: a generated or downloaded dataset's identity holds no data_files key
        ident["data_files"] = files
    return ident


def run_id(spec) -> str:
    """`<dataset>-<model>-<arm>-<hash>`: readable in a listing, and the same for the same validated config.

    The spec is validated and typed first, so `lr=1e-2` and `lr=0.01` (or `strength=1` and `strength=1.0`)
    give one id.
    """
    text = json.dumps(identity(spec), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    arm = "+".join(spec.regularizers) or "baseline"
    return f"{spec.dataset.name}-{spec.model.name}-{arm}-{digest}"


def job_dir(root: str | os.PathLike, spec) -> Path:
    return Path(root) / JOBS / run_id(spec)


def read_record(folder: Path) -> dict | None:
    """The folder's complete record, or None: absent, half-written or corrupt records all read as incomplete."""
    try:
        return records.load(Path(folder) / records.RESULT)
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def is_complete(folder: Path, rid: str | None = None) -> bool:
    record = read_record(folder)
    return record is not None and (rid is None or record.get("run_id") == rid)


def write_failure(folder: Path, err: BaseException, rid: str | None = None) -> Path:
    """failure.json (error type and message) and failure.txt (the traceback), each written atomically."""
    folder = Path(folder)
    tb = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    atomic_write(folder / TRACEBACK, tb)
    failure = {
        "format": "regbench.failure/1",
        "run_id": rid,
        "error": type(err).__name__,
        "message": str(err).splitlines()[0] if str(err) else "",
        "traceback": TRACEBACK,
        "failed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path = folder / FAILURE
    atomic_write(path, json.dumps(failure, indent=2) + "\n")
    return path


def checkpoints(folder: Path) -> list[Path]:
    """The job's checkpoint files: one, or one per chunk of members (trainer.batching; train/batching.py)."""
    stem, suffix = CHECKPOINT.rsplit(".", 1)
    return [Path(folder) / CHECKPOINT, *sorted(Path(folder).glob(f"{stem}.members-*.{suffix}"))]


def clear_failure(folder: Path) -> None:
    for name in (FAILURE, TRACEBACK):
        (Path(folder) / name).unlink(missing_ok=True)


def append_line(path: Path, entry: dict) -> None:
    """Append one JSON line (a sweep's jobs.jsonl, the command's outcome file) with a single O_APPEND write, so
    lines from several processes appending at once never interleave."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(entry) + "\n").encode())
    finally:
        os.close(fd)


def indexed_jobs(index: Path) -> list[Path]:
    """The job folders a sweep's jobs.jsonl names (each once, in order); unreadable lines are passed over."""
    index = Path(index)
    try:
        lines = index.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    folders: dict[Path, None] = {}
    for line in lines:
        try:
            entry = json.loads(line)
            folders[(index.parent / entry["dir"]).resolve()] = None
        except (ValueError, KeyError, TypeError):
            continue
    return list(folders)


@contextmanager
def lock(folder: Path, wait: bool = True):
    """Hold `folder/.lock` exclusively (flock) while a job trains; the file is removed when the lock is released.

    The kernel drops a flock when its holder dies, SIGKILL included, so a killed run never leaves a stale lock.
    A second process asking for a held lock waits (logging once) when `wait`, else gets BlockingIOError. Each
    holder unlinks the file before releasing it, so a waiter that then gets the lock checks that it locked the
    file the path still names (same inode), and otherwise locks the new one: no two holders at once.
    """
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    logged = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES) or not wait:
                    raise BlockingIOError(errno.EAGAIN, f"{folder}: another process is running this job") from None
                if not logged:
                    log.info("%s: another process is running this job; waiting for it", folder.name)
                    logged = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # while still held: see above
        os.close(fd)  # closing the descriptor releases the lock
