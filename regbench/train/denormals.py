"""CPU training with denormal floats flushed to zero, on every thread that computes.

Training drives some numbers through float32's denormal range (below 1.2e-38): a confident model's softmax
probabilities of the wrong classes (exp(-100) ~ 4e-44), then the gradients, products and Adam moments made from
them. On many x86 CPUs an instruction that reads or writes a denormal takes a microcode assist of a hundred cycles
or more: on the 2-core Xeon (Emerald Rapids) this was measured on, the benchmark population's step took ~3.5 ms
over its first 1000 steps and ~10 ms over the next 1000, the extra nearly all in the matmuls and Adam. With the
CPU's flush-to-zero and denormals-are-zero modes (FTZ/DAZ; TensorFlow and XLA set them on their CPU threads) every
step takes the first figure, and the values lost lie far below anything float32 training resolves.

The modes live in each thread's MXCSR register, and torch.set_flush_denormal sets the calling thread's alone:
the OpenMP workers that run a share of every kernel keep theirs, and a member's bits would then depend on how a
kernel split its rows between threads, that is on the population's size. So `flushing()` runs
torch.set_flush_denormal on the calling thread and on each worker of its OpenMP pool, through one parallel region
of the OpenMP runtime torch loaded (GOMP_parallel, which GNU's libgomp and LLVM's and Intel's runtimes all
export; other packages map runtimes of their own, so each is tried, torch's first, until a denormal tensor split
across every thread of a kernel comes out flushed), and sets the modes back off afterwards. Workers the pool adds
later are made by the calling thread and copy its modes. Where that cannot be done or checked (no OpenMP runtime
found, another thread pool), nothing is flushed and training runs with IEEE gradual underflow, as it would with
trainer.flush_denormals=false; the record says which (provenance).

Training in a thread of its own that sets the modes first (its workers, made at its first parallel kernel, copy
them) also works, but is slower: a second OpenMP pool puts more threads than cores under libgomp's management,
which then cuts its workers' spinning to a hundred iterations, and they sleep between kernels (75 context
switches a step; the population's first 1000 steps took 8-10% longer).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
from collections.abc import Iterator

import torch

log = logging.getLogger("regbench")

_Region = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_PROBE_PER_THREAD = 1 << 16  # elements: more than ATen's grain (32768), so every thread takes a share
_loaded: dict[str, ctypes.CDLL] = {}
_NOT_YET = "not yet"  # _runtime before any runtime was found to reach torch's pool
_runtime: str | None = _NOT_YET  # the path of the one that did; None: the calling thread alone did (one thread)


def _candidates() -> list[str | None]:
    """Paths of the OpenMP runtimes mapped into the process (Linux), torch's own first, then None (the calling
    thread alone). Other packages bring their own: scikit-learn's wheel maps a second libgomp, whose pool is not
    the one torch's kernels run on."""
    try:
        with open(f"/proc/{os.getpid()}/maps") as maps:
            paths = {line.split()[-1] for line in maps if "/" in line}
    except OSError:
        paths = set()
    found = sorted(p for p in paths if os.path.basename(p).startswith(("libgomp", "libomp", "libiomp")))
    torch_dir = os.path.dirname(torch.__file__)
    return sorted(found, key=lambda p: not p.startswith(torch_dir)) + [None]


def _set_everywhere(on: bool, path: str | None) -> bool:
    """FTZ/DAZ on (or off) on this thread and the workers of its pool in the OpenMP runtime at `path` (None: this
    thread only); False where the CPU lacks them or the runtime has no GOMP_parallel."""
    supported = []

    @_Region
    def region(_):  # runs once on each thread of the parallel region, this one included
        supported.append(torch.set_flush_denormal(on))

    if path is None:
        region(None)
        return all(supported)
    lib = _loaded.get(path)
    if lib is None:
        lib = _loaded[path] = ctypes.CDLL(path)
        if hasattr(lib, "GOMP_parallel"):
            lib.GOMP_parallel.argtypes = [_Region, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
            lib.GOMP_parallel.restype = None
    if not hasattr(lib, "GOMP_parallel"):
        return False
    lib.GOMP_parallel(region, None, 0, 0)  # 0 threads: the pool's size, torch.get_num_threads()
    return bool(supported) and all(supported)


def _all_flush(probe: torch.Tensor) -> bool:
    """Whether every thread of a kernel split across the pool reads a denormal as zero (DAZ) or writes one as
    zero (FTZ). The result is read as integers: a flushing thread would read a float denormal as zero too."""
    return not bool(probe.mul(1.0).view(torch.int32).any())


def _to_try() -> Iterator[str | None]:
    """The runtime found before, then the others: the process's mapped files are read only when it fails."""
    if _runtime != _NOT_YET:
        yield _runtime
    for path in _candidates():
        if path != _runtime:
            yield path


def _turn_on(probe: torch.Tensor) -> tuple[bool, str | None]:
    """Sets the modes through the runtime that reaches every thread of torch's pool, the one found before first:
    (True, its path), or (False, None) with the modes left off when none does."""
    global _runtime
    for path in _to_try():
        if _set_everywhere(True, path) and _all_flush(probe):
            _runtime = path
            return True, path
        _set_everywhere(False, path)
    return False, None


@contextlib.contextmanager
def flushing(enabled: bool = True) -> Iterator[bool]:
    """Denormals flushed to zero on this thread and its OpenMP workers inside; yields whether they are. On leaving,
    the modes are set back off (unless every thread already flushed on entry, which is left as it was)."""
    if not enabled:
        yield False
        return
    # the bits of a float32 denormal (~1e-40), filled as integers: no conversion that a flushing thread would zero
    probe = torch.full((_PROBE_PER_THREAD * torch.get_num_threads(),), 0x116C2, dtype=torch.int32).view(torch.float32)
    if _all_flush(probe):  # every thread flushes already: left as it is
        yield True
        return
    flushed, path = _turn_on(probe)
    if not flushed:
        _warn_once(
            "denormal floats are not flushed to zero here (no OpenMP runtime reached every thread, or the CPU has "
            "no FTZ/DAZ): training uses IEEE gradual underflow, which is slower on many CPUs"
        )
    try:
        yield flushed
    finally:
        if flushed:
            _set_everywhere(False, path)


_warned = False


def _warn_once(message: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning(message)
