"""The training step replayed as one captured CUDA graph.

A member-batched step of a small model is some sixty kernels of a few microseconds each, so on a GPU the host's
launches set the pace, not the kernels: on an H100 the benchmark population's step took 1.4 ms of host time for
0.2 ms of GPU time. Captured once and replayed, a step is one launch.

What a capture records is fixed: the kernels and the addresses they read and write. So the step reads its
minibatch indices from one static tensor written before each replay, takes its step number from a device counter
it increments itself (the dropout masks and augmentations are keyed by it), and writes only into tensors that live
as long as the training (parameters, their flat gradient, the optimizer's state, the model's scratch). What the
step does can still change between evaluations: members that freeze make it snapshot and restore them. Such a
change is a new `key`, which captures a graph of its own.

The first steps run eagerly on a side stream, as torch's documentation asks: they build what is made lazily (the
optimizer's state, the model's scratch, cuBLAS's workspace) outside the capture. A step that cannot be captured (an
operation that synchronises with the host) is logged once and run eagerly from then on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable

import torch

log = logging.getLogger("regbench")


class CudaGraphStep:
    WARMUP = 2  # eager steps before the first capture

    def __init__(self, step: Callable[[torch.Tensor], None], idx: torch.Tensor):
        self.step = step
        self.idx = torch.empty_like(idx)  # the static input: this step's [K, B] minibatch indices
        self.graphs: dict[Hashable, torch.cuda.CUDAGraph] = {}
        self.warmup = self.WARMUP
        self.failed: str | None = None
        self.side = torch.cuda.Stream()  # where eager steps run (warm-up, or every step if capture failed)

    def __call__(self, idx: torch.Tensor, key: Hashable = None) -> None:
        self.idx.copy_(idx)
        graph = self.graphs.get(key)
        if graph is not None:
            graph.replay()
        elif self.failed is not None or self.warmup > 0:
            self.warmup -= 1
            self._eager()
        else:
            self._capture(key)

    def _eager(self) -> None:
        self.side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.side):
            self.step(self.idx)
        torch.cuda.current_stream().wait_stream(self.side)

    def _capture(self, key: Hashable) -> None:
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self.step(self.idx)
        except RuntimeError as e:  # nothing captured ran: the step is still to be done
            self.failed = str(e).splitlines()[0]
            log.warning("the training step could not be captured as a CUDA graph (%s); running it eagerly", self.failed)
            self._eager()
            return
        self.graphs[key] = graph
        graph.replay()  # a capture records the step without running it
