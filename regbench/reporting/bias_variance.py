"""`regbench report --bias-variance`: does a regularizer cut variance, raise bias, or both?

Members of one group (one setting of one arm) differ only in their seed: initial weights, minibatch order, dropout
masks, and with `dataset.bootstrap=true` the resample of the training split they train on. Their test-split
predictions (kept with `trainer.predictions=true`, records.PREDICTIONS) give, per group:

  cross-entropy (Yang et al. 2020, "Rethinking Bias-Variance Trade-off for Generalization of Neural Networks"):
    the members' mean test cross-entropy  =  bias + variance, exactly, where
    bias      = cross-entropy of the normalised geometric mean of the members' predicted distributions, and
    variance  = the members' mean KL divergence from that mean distribution;
  0-1 loss: the members' mean error, the error of their majority vote, and their disagreement (the mean fraction
    of test examples on which a member's prediction differs from the vote: 0-1 loss's variance, Domingos 2000).

A group needs two members at least; it is decomposed over the seeds the report holds for it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from regbench.errors import RunError
from regbench.reporting import stats
from regbench.results import records

COLUMNS = ["ce", "ce_bias", "ce_variance", "err", "vote_err", "disagreement"]


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = a.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def decompose(log_probs: np.ndarray, labels: np.ndarray) -> dict:
    """log_probs: [M, N, C] members' log-probabilities (each row normalised); labels: [N]. The columns above."""
    lp = np.asarray(log_probs, dtype=np.float64)
    lp = lp - _logsumexp(lp, 2)[..., None]  # float16 storage rounds the normalisation: restore it exactly
    m, n, c = lp.shape
    rows = np.arange(n)
    ce = -lp[:, rows, labels].mean()
    mean_log = lp.mean(0)  # [N, C]: log of the geometric mean, unnormalised
    log_bar = mean_log - _logsumexp(mean_log, 1)[:, None]
    bias = -log_bar[rows, labels].mean()
    variance = (np.exp(log_bar)[None] * (log_bar[None] - lp)).sum(2).mean()  # mean over members and examples of KL
    pred = lp.argmax(2)  # [M, N]
    votes = np.stack([(pred == k).sum(0) for k in range(c)], 1)  # [N, C]
    vote = votes.argmax(1)  # ties: the lowest class
    return {
        "ce": float(ce),
        "ce_bias": float(bias),
        "ce_variance": float(variance),
        "err": float((pred != labels[None]).mean()),
        "vote_err": float((vote != labels).mean()),
        "disagreement": float((pred != vote[None]).mean()),
    }


def _load(source: str, cache: dict):
    if source not in cache:
        path = Path(source) / records.PREDICTIONS
        try:
            with np.load(path) as z:
                cache[source] = {k: z[k] for k in z.files}
        except (OSError, ValueError):
            cache[source] = None
    return cache[source]


def table(members: pd.DataFrame) -> pd.DataFrame:
    """One row per group with predictions from two members or more: the group's keys, members, and COLUMNS."""
    cache: dict = {}
    rows, missing = [], 0
    for key, g in members.groupby(stats.GROUP, sort=False):
        preds, labels, seeds = [], None, set()
        for r in g.itertuples():  # each seed once, from the first record that kept its predictions
            z = _load(r.source, cache)
            if r.seed in seeds or z is None or f"member_{r.member}" not in z or r.diverged:
                continue
            seeds.add(r.seed)
            preds.append(z[f"member_{r.member}"])
            labels = z["labels"]
        if len(preds) < 2:
            missing += 1
            continue
        row = dict(zip(stats.GROUP, key)) | {"arm": g["arm"].iloc[0], "members": len(preds)}
        rows.append(row | decompose(np.stack(preds), labels))
    if not rows:
        raise RunError(
            "--bias-variance: no group has test predictions from two members or more; train with "
            "trainer.predictions=true (and trainer.seeds >= 2)"
        )
    out = pd.DataFrame(rows)
    out["config"] = out["context"].map(stats.context_labels(out["context"]))
    out.attrs["left_out"] = missing
    return out[["dataset", "model", "config", "setting", "arm", "members", *COLUMNS, "context"]]
