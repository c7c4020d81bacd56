"""Where a number came from: package and torch versions, git commit, device, host, time."""

from __future__ import annotations

import datetime as _dt
import platform
import socket
import subprocess
from functools import lru_cache
from pathlib import Path

import torch

import regbench


@lru_cache(maxsize=1)
def git_state() -> dict:
    """Commit of the source tree regbench runs from, and whether it was dirty; None when installed from a wheel.

    Only a repository whose top level is regbench's own source tree counts: a wheel installed into a virtualenv
    that happens to sit inside some other repository must not record that repository's commit.
    """
    src = Path(regbench.__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(src), *args], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != src:
            return {"git_commit": None, "git_dirty": None}
        return {"git_commit": git("rev-parse", "HEAD"), "git_dirty": git("status", "--porcelain", "-uno") != ""}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model() or platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def cpu_model() -> str | None:
    """The CPU's model name on Linux (platform.processor() is empty there): another model may run other kernels
    that round differently, so results are reproducible to the bit on the same model only."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
                if not line.strip():  # the first processor's block is enough
                    break
    except OSError:
        return None
    name = fields.get("model name")
    if name is None:
        return None
    # under a hypervisor the name can be as vague as "Intel(R) Xeon(R) Processor": family and model tell more
    return f"{name} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')})"


def collect(device: torch.device) -> dict:
    return {
        "regbench_version": regbench.__version__,
        **git_state(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "device": str(device),
        "device_name": device_name(device),
        "cpu_threads": torch.get_num_threads(),
        "host": socket.gethostname(),
        "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
