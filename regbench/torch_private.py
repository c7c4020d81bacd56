"""The private torch operations regbench's fast path calls, in one place.

None of them is public API: a torch release may rename, remove or change any of them. Tested on torch 2.13.0
(CPU); the fused Adam kernel runs on the CPU from torch 2.4 (pyproject's lower bound). Before training takes the
fast path the engine calls `usable()`, which runs each operation once on tiny tensors against a public
equivalent; if one is missing or gives another answer, training takes the plain path (trainer.fast=false:
autograd and torch.optim) with one warning, instead of failing part-way.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger("regbench")

TESTED_ON = ("2.13.0",)

_missing: list[str] | None = None  # the operations that failed their probe; None: not probed yet
_warned = False


def fused_adam_(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, **hyper) -> None:
    """Adam on lists of tensors in one fused kernel, as torch.optim.Adam(fused=True) calls it; in place."""
    torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, **hyper)


def log_softmax_out(x: torch.Tensor, dim: int, out: torch.Tensor) -> torch.Tensor:
    """log_softmax written into `out` (torch.log_softmax has no out= argument)."""
    return torch.ops.aten._log_softmax.out(x, dim, False, out=out)


def threshold_backward_(grad: torch.Tensor, out: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """ReLU's backward in place: grad zeroed where out <= threshold."""
    return torch.ops.aten.threshold_backward.grad_input(grad, out, threshold, grad_input=grad)


def _probe_fused_adam() -> bool:
    p, g = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 0.25])
    m, v, step = torch.zeros(2), torch.zeros(2), torch.ones(())
    hyper = dict(amsgrad=False, lr=0.1, beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8, maximize=False)
    fused_adam_([p], [g], [m], [v], [], [step], **hyper, grad_scale=None, found_inf=None)
    return torch.allclose(p, torch.tensor([0.9, -2.1]))  # Adam's first step moves each weight by lr


def _probe_log_softmax() -> bool:
    x = torch.tensor([[1.0, 2.0, 3.0]])
    return torch.allclose(log_softmax_out(x, 1, torch.empty_like(x)), torch.log_softmax(x, 1))


def _probe_threshold_backward() -> bool:
    g = torch.ones(3)
    return torch.equal(threshold_backward_(g, torch.tensor([-1.0, 0.0, 2.0])), torch.tensor([0.0, 0.0, 1.0]))


PROBES = {
    "torch._fused_adam_": _probe_fused_adam,
    "aten._log_softmax.out": _probe_log_softmax,
    "aten.threshold_backward.grad_input": _probe_threshold_backward,
}


def missing() -> list[str]:
    """The private operations that are absent or give another answer in this torch (probed once)."""
    global _missing
    if _missing is None:
        _missing = []
        for name, probe in PROBES.items():
            try:
                ok = probe()
            except (AttributeError, RuntimeError, TypeError, NotImplementedError):
                ok = False
            if not ok:
                _missing.append(name)
    return _missing


def usable() -> bool:
    """Whether the fast path can run here; warns once per process when it cannot."""
    global _warned
    gone = missing()
    if gone and not _warned:
        _warned = True
        log.warning(
            "torch %s lacks private operations the fast path uses (%s; tested on torch %s): training takes the "
            "plain path (trainer.fast=false)",
            torch.__version__,
            ", ".join(gone),
            ", ".join(TESTED_ON),
        )
    return not gone
