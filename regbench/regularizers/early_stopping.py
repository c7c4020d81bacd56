"""Early stopping: stop a member when its validation curve says it has started to overfit, and give it back the
weights of its best evaluation.

Criteria (one per member; "error" is the monitored validation loss, or 1 - accuracy with monitor=val_acc, and
"training error" the same quantity on the training split; t counts evaluations):
  patience  stop after `patience` evaluations without improving the best error by more than `min_delta`
  gl        Prechelt's GL_alpha: generalisation loss GL(t) = 100 * (E_va(t) / E_opt(t) - 1) > gl_alpha,
            E_opt(t) the lowest validation error up to t
  pq        Prechelt's PQ_alpha: at the end of each strip of k = `strip` evaluations, GL(t) / P_k(t) > pq_alpha,
            with training progress P_k(t) = 1000 * (mean of E_tr over the strip / its minimum - 1)
  up        Prechelt's UP_s: the validation error rose at the end of s = `up_strips` successive strips
(L. Prechelt, "Early stopping - but when?", in Neural Networks: Tricks of the Trade, 1998.)

A stopped member is frozen by the engine (its weights stay as they were), and at the end every member using early
stopping gets the weights of its lowest validation error back (`restore`). Its record carries `stop_epoch` (None if
no criterion fired: it trained the whole budget) and `best_epoch`. Baseline members train the whole budget.

The same criteria replay on a recorded history.csv without training (`replay`, and `regbench early-stop FOLDER`):
for a member that trained the whole budget, the replayed best epoch's metrics are exactly those an early-stopped
run would have ended with, since stopping changes nothing before the stop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from regbench.errors import RunError
from regbench.regularizers.base import Regularizer
from regbench.schema import param
from regbench.train.evaluate import COLUMNS

CRITERIA = ("patience", "gl", "pq", "up")


@dataclass
class EarlyStoppingConfig:
    criterion: str = param("patience", "when to stop (see the module's docstring)", choices=list(CRITERIA))
    monitor: str = param("val_loss", "validation quantity watched", choices=["val_loss", "val_acc"])
    patience: int = param(10, "patience: evaluations without improvement before stopping", ge=1)
    min_delta: float = param(0.0, "patience: smallest decrease of the error that counts as improvement", ge=0.0)
    gl_alpha: float = param(5.0, "gl: largest tolerated generalisation loss, in percent", gt=0.0)
    pq_alpha: float = param(0.5, "pq: largest tolerated generalisation loss per unit of training progress", gt=0.0)
    strip: int = param(5, "pq, up: evaluations per strip (Prechelt's k)", ge=1)
    up_strips: int = param(3, "up: successive strips with a rising validation error (Prechelt's s)", ge=1)
    restore: bool = param(True, "give each member the weights of its best evaluation at the end")


class Criterion:
    """Vectorised over K members: feed it one evaluation at a time; it says who stops now and tracks the best."""

    def __init__(self, configs: list[EarlyStoppingConfig | None], device):
        def vals(attr, off=0.0):
            return torch.tensor([float(getattr(c, attr)) if c else off for c in configs], device=device)

        self.active = torch.tensor([c is not None for c in configs], device=device)
        self.kind = torch.tensor([CRITERIA.index(c.criterion) if c else 0 for c in configs], device=device)
        self.acc = torch.tensor([bool(c and c.monitor == "val_acc") for c in configs], device=device)
        self.patience, self.min_delta = vals("patience", 1), vals("min_delta")
        self.gl_alpha, self.pq_alpha = vals("gl_alpha", 1), vals("pq_alpha", 1)
        self.strip, self.up_strips = vals("strip", 1).long(), vals("up_strips", 1).long()
        k = len(configs)
        inf = torch.full((k,), float("inf"), device=device)
        self.best, self.ref, self.strip_end = inf.clone(), inf.clone(), inf.clone()
        self.waited = torch.zeros(k, device=device)
        self.ups = torch.zeros(k, dtype=torch.long, device=device)
        self.best_epoch = torch.zeros(k, dtype=torch.long, device=device)
        self.train_errors: list[torch.Tensor] = []  # the last max(strip) evaluations
        self.window = max([c.strip for c in configs if c is not None] or [1])
        self.t = 0

    def errors(self, metrics: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(validation error, training error) [K] from a [K, 6] metrics row (columns as COLUMNS)."""
        col = {c: metrics[:, i] for i, c in enumerate(COLUMNS)}
        va = torch.where(self.acc, 1 - col["val_acc"], col["val_loss"])
        tr = torch.where(self.acc, 1 - col["train_acc"], col["train_loss"])
        return va, tr

    def update(self, metrics: torch.Tensor, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(stop [K] bool, improved [K] bool) after one more evaluation."""
        va, tr = self.errors(metrics)
        self.t += 1
        self.train_errors = [*self.train_errors[1 - self.window :], tr] if self.window > 1 else [tr]
        live = self.active  # members still training; a stopped member's state stays as it was at its stop
        va = torch.where(live, va, self.best)
        improved = (va < self.best) & live
        self.best = torch.minimum(self.best, va)
        self.best_epoch = torch.where(improved, epoch, self.best_epoch)
        # patience, measured against the error at the last improvement by more than min_delta
        counted = va < self.ref - self.min_delta
        self.ref = torch.where(counted, va, self.ref)
        self.waited = torch.where(counted, 0.0, self.waited + 1)
        stop_patience = self.waited >= self.patience
        gl = 100 * (va / self.best.clamp_min(1e-12) - 1)
        stop_gl = gl > self.gl_alpha
        # Strip ends: every k-th evaluation of each member's own k.
        at_end = (self.t % self.strip) == 0
        window = torch.stack(self.train_errors)  # [W, K], newest last
        age = torch.arange(window.shape[0] - 1, -1, -1, device=window.device).view(-1, 1)
        in_strip = age < self.strip.view(1, -1)
        mean = (window * in_strip).sum(0) / self.strip
        low = torch.where(in_strip, window, torch.full_like(window, float("inf"))).amin(0)
        progress = 1000 * (mean / low.clamp_min(1e-12) - 1)
        stop_pq = at_end & (gl / progress.clamp_min(1e-12) > self.pq_alpha)
        rose = va > self.strip_end
        self.ups = torch.where(at_end & live, torch.where(rose, self.ups + 1, 0), self.ups)
        self.strip_end = torch.where(at_end & live, va, self.strip_end)
        stop_up = at_end & (self.ups >= self.up_strips)
        stop = torch.stack([stop_patience, stop_gl, stop_pq, stop_up]).gather(0, self.kind.view(1, -1))[0] & live
        self.active = live & ~stop
        return stop, improved


# What a criterion accumulates over evaluations: saved in checkpoints, so a resumed run stops where it would have.
CRITERION_STATE = ("active", "best", "ref", "strip_end", "waited", "ups", "best_epoch", "train_errors", "t")


class EarlyStopping(Regularizer):
    name = "early_stopping"
    Config = EarlyStoppingConfig
    summary = "stop each member by patience or Prechelt's GL/PQ/UP; restore its best weights"
    singles = {"weak": {"patience": 20}, "mid": {"patience": 10}, "strong": {"patience": 5}}

    def __init__(self, configs, device="cpu"):
        super().__init__(configs, device)
        self.criterion = Criterion(configs, self.device)
        self.restore = torch.tensor([bool(c and c.restore) for c in configs], device=self.device)
        self.best_state: list[torch.Tensor] | None = None
        self.stopped = torch.zeros(self.k, dtype=torch.bool, device=self.device)
        self.stop_epoch = torch.zeros(self.k, dtype=torch.long, device=self.device)

    @torch.no_grad()
    def on_eval(self, model, epoch, metrics):
        stop, improved = self.criterion.update(metrics, epoch)
        tensors = model.member_tensors()
        if self.best_state is None:
            self.best_state = [t.detach().clone() for t in tensors]
        for t, best in zip(tensors, self.best_state):
            view = best.view(self.k, -1)
            view.copy_(torch.where(improved.view(-1, 1), t.view(self.k, -1), view))
        self.stop_epoch = torch.where(stop, epoch, self.stop_epoch)
        self.stopped |= stop
        return stop

    @torch.no_grad()
    def on_end(self, model):
        if self.best_state is None or not bool(self.restore.any()):
            return False
        for t, best in zip(model.member_tensors(), self.best_state):
            view = t.view(self.k, -1)
            view.copy_(torch.where(self.restore.view(-1, 1), best.view(self.k, -1), view))
        return True

    def state_dict(self):
        crit = {name: getattr(self.criterion, name) for name in CRITERION_STATE}
        return {"best_state": self.best_state, "stopped": self.stopped, "stop_epoch": self.stop_epoch, **crit}

    def load_state_dict(self, state):
        self.best_state, self.stopped, self.stop_epoch = state["best_state"], state["stopped"], state["stop_epoch"]
        for name in CRITERION_STATE:
            setattr(self.criterion, name, state[name])

    def record(self):
        stopped, stop_epoch = self.stopped.tolist(), self.stop_epoch.tolist()
        best_epoch = self.criterion.best_epoch.tolist()
        return [
            {"stop_epoch": stop_epoch[j] if stopped[j] else None, "best_epoch": best_epoch[j]} if c else {}
            for j, c in enumerate(self.configs)
        ]


# history.csv's columns that a replay reads, and those of them that must be whole numbers on every row
HISTORY_COLUMNS = ("member", "arm", "seed", "epoch", *COLUMNS)
INDEX_COLUMNS = ("member", "seed", "epoch")
# the settings each criterion reads, to say which were used
CRITERION_SETTINGS = {
    "patience": ("patience", "min_delta"),
    "gl": ("gl_alpha",),
    "pq": ("pq_alpha", "strip"),
    "up": ("strip", "up_strips"),
}


def describe(cfg: EarlyStoppingConfig) -> str:
    """The settings a replay with `cfg` uses, e.g. 'patience on val_loss, patience=2, min_delta=0.0'."""
    used = ", ".join(f"{k}={getattr(cfg, k)}" for k in CRITERION_SETTINGS[cfg.criterion])
    return f"{cfg.criterion} on {cfg.monitor}, {used}"


def load_history(path: Path) -> pd.DataFrame:
    """A recorded history.csv, checked for what `replay` needs; RunError naming the file and what is wrong."""
    try:
        h = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise RunError(f"{path}: empty; a history has a header ({','.join(HISTORY_COLUMNS)}) and rows") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise RunError(f"{path}: not readable as csv: {str(err).strip().splitlines()[-1]}") from None
    missing = [c for c in HISTORY_COLUMNS if c not in h.columns]
    if missing:
        raise RunError(f"{path}: missing columns {', '.join(missing)}; a history has {', '.join(HISTORY_COLUMNS)}")
    if h.empty:
        raise RunError(f"{path}: no rows, only a header")
    numeric = [c for c in HISTORY_COLUMNS if c != "arm"]
    bad = [c for c in numeric if not pd.api.types.is_numeric_dtype(h[c])]
    if bad:
        raise RunError(f"{path}: non-numeric values in columns {', '.join(bad)}")
    # metrics may be NaN (a diverged member's rows); which member and epoch a row belongs to may not
    holes = [c for c in INDEX_COLUMNS if h[c].isna().any() or (h[c] != h[c].round()).any()]
    if holes:
        raise RunError(f"{path}: missing or fractional values in columns {', '.join(holes)} (a cut-off row?)")
    return h


def replay(history: pd.DataFrame, cfg: EarlyStoppingConfig) -> pd.DataFrame:
    """Apply one criterion to every member of a recorded history (history.csv's rows); no training.

    Returns a row per member: arm, seed, stop_epoch (None if it never fired), best_epoch, and the metrics at the
    best epoch among those before the stop, which is what early stopping with restore would have ended with.
    """
    h = history.sort_values(["epoch", "member"])
    members = sorted(h["member"].unique())
    crit = Criterion([cfg] * len(members), "cpu")
    stopped: dict[int, int] = {}
    for epoch, rows in h.groupby("epoch", sort=True):
        rows = rows.set_index("member").reindex(members)
        stop, _ = crit.update(torch.tensor(rows[list(COLUMNS)].to_numpy(), dtype=torch.float32), int(epoch))
        for j in torch.nonzero(stop).flatten().tolist():
            stopped.setdefault(members[j], int(epoch))
        if len(stopped) == len(members):
            break
    best = crit.best_epoch.tolist()
    out = []
    for j, m in enumerate(members):
        at_best = h[(h["member"] == m) & (h["epoch"] == best[j])].iloc[0]
        out.append(
            {
                "member": m,
                "arm": at_best["arm"],
                "seed": int(at_best["seed"]),
                "stop_epoch": stopped.get(m),
                "best_epoch": best[j],
                **{c: float(at_best[c]) for c in COLUMNS},
                "gap_acc": float(at_best["train_acc"] - at_best["val_acc"]),
            }
        )
    return pd.DataFrame(out)
