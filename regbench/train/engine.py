"""The training loop: K members as one member-batched computation.

Data stay on the device as tensors and minibatches are gathered by index: no DataLoader, and no host
synchronisation inside the step loop (the only syncs are one per evaluation: progress, freezing, divergence).

A member whose loss turns NaN or infinite (its data loss: a penalty whose value overflows while the weights stay
finite is not divergence) is caught by a [K] flag accumulated on the device every step and read at the next
evaluation, or by non-finite evaluation metrics; from then on it is frozen and marked diverged, while the rest of
the population trains on (members never mix: a NaN in one member's slice of a batched matmul stays in that slice).

Two paths compute the same training, as nanoGPT keeps its manual attention beside the flash one:
  plain (trainer.fast=false): the model's forward and autograd's backward, eager (no torch.compile, no CUDA
    graph), penalties in the loss, torch.optim's Adam or SGD on each parameter. The reference: read it first.
  fast (the default): the model's hand-written step where it has one (the MLP, models/mlp_fast.py), else autograd
    with the penalties' closed-form gradients; one fused optimizer over a flat buffer of all parameters
    (optim.py), on the CPU stepping each layer as soon as its gradients are complete; on CUDA the step captured
    as a graph (cuda_graph.py). It needs a few private torch operations (torch_private.py): where they are
    missing, training takes the plain path.
tests/test_plain.py checks that the two agree.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F

from regbench import models, regularizers, rng, torch_private
from regbench.errors import UsageError
from regbench.models.base import ModelHints
from regbench.models.layers import Context
from regbench.regularizers.base import Batch
from regbench.train import checkpoint, complexity, cuda_graph, denormals, optim
from regbench.train.evaluate import COLUMNS, evaluate
from regbench.train.population import Member

log = logging.getLogger("regbench")


@dataclass
class PopulationResult:
    members: list[Member]
    final: torch.Tensor  # [K, 6] metrics at the end (columns as COLUMNS), on the CPU
    frozen_at: list[int | None]  # per member: the epoch after which it stopped updating, None if it never did
    diverged_at: list[int | None]  # per member: the evaluation epoch its loss was first seen NaN/inf, or None
    history: list[dict]  # one row per member per evaluation
    extras: list[dict]  # per member: record fields contributed by regularizers (Regularizer.record)
    steps: int
    epochs: int
    wall_time: float
    device: str
    denormals_flushed: bool = False  # trained with FTZ/DAZ on every CPU thread (see denormals.py)

    def select(self, indices: list[int]) -> PopulationResult:
        """The result these members would have had trained on their own: a sweep job's share of a population.

        Members never interact, so their numbers are their own; only the loop's length depends on the company
        kept (a population runs until its last member freezes), so it is cut where these members' own run stops.
        """
        stops = [self.frozen_at[i] for i in indices]
        last = max(stops) if all(s is not None for s in stops) else self.epochs
        pos = {j: n for n, j in enumerate(indices)}
        rows = [{**r, "member": pos[r["member"]]} for r in self.history if r["member"] in pos and r["epoch"] <= last]
        rows.sort(key=lambda r: (r["epoch"], r["member"]))
        steps = max((r["step"] for r in rows), default=self.steps) if last < self.epochs else self.steps
        return PopulationResult(
            members=[self.members[i] for i in indices],
            final=self.final[indices],
            frozen_at=stops,
            diverged_at=[self.diverged_at[i] for i in indices],
            history=rows,
            extras=[self.extras[i] for i in indices],
            steps=steps,
            epochs=last,
            wall_time=self.wall_time * len(indices) / len(self.members),
            device=self.device,
            denormals_flushed=self.denormals_flushed,
        )


def member_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per member, [K]; y holds class indices [K, B] or distributions [K, B, C]."""
    if y.dim() == 3:
        return -(y * logits.log_softmax(-1)).sum(-1).mean(1)
    # flattened to [K*B, C]: the [K, C, B] layout would copy the logits and take the slower 2-d loss kernels
    k, b, c = logits.shape
    return F.cross_entropy(logits.reshape(k * b, c), y.reshape(k * b), reduction="none").view(k, b).mean(1)


def build_regularizers(members: list[Member], device) -> list:
    names = list(dict.fromkeys(n for m in members for n in m.regularizers))
    return [regularizers.get(n)([m.regularizers.get(n) for m in members], device) for n in names]


def autograd_step(forward, autocast, x: torch.Tensor, y: torch.Tensor, ctx: Context, penalties=()) -> torch.Tensor:
    """A training step's forward and backward through autograd; [K] bool: the member's loss is finite.

    `penalties`: (regularizer, model) pairs whose penalty() joins the loss (the plain path); the fast path adds
    their gradients in closed form after the backward pass instead."""
    with autocast:
        loss = member_loss(forward(x, ctx).float(), y)
    total = loss
    for r, model in penalties:
        pen = r.penalty(model)
        if pen is not None:
            total = total + pen
    # Members are independent, so the gradient of the sum is each member's own gradient.
    total.sum().backward()
    return torch.isfinite(loss.detach())


class Gather:
    """The examples and labels of [K, B] minibatch indices, written into the same two tensors every step (a fresh
    half-megabyte tensor a step costs page faults on CPU). index_select copies whole rows; advanced indexing
    (x[idx]) computes an offset per element and takes four times as long."""

    def __init__(self, splits):
        self.x, self.y = splits.x_train, splits.y_train
        self.out: tuple[torch.Tensor, ...] | None = None  # flat x, flat y, and their [K, B, ...] views

    def __call__(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, b = idx.shape
        if self.out is None or self.out[1].shape != (k * b,):
            x, y = self.x.new_empty((k * b, *self.x.shape[1:])), self.y.new_empty((k * b,))
            self.out = (x, y, x.view(k, b, *x.shape[1:]), y.view(k, b))
        flat = idx.reshape(-1)
        torch.index_select(self.x, 0, flat, out=self.out[0])
        torch.index_select(self.y, 0, flat, out=self.out[1])
        return self.out[2], self.out[3]


class Freezer:
    """Keeps frozen members' parameters and running statistics unchanged while the rest train on.

    Members freeze when a hook asks (early stopping) or when they diverge. Which members are frozen is
    only learned at an evaluation (a host sync happens there anyway), so steps pay nothing until one is.
    """

    def __init__(self, model, k: int, device):
        self.k = k
        self.mask = torch.zeros(k, dtype=torch.bool, device=device)
        self.any = False
        self.tensors = model.member_tensors()
        self.frozen_at: list[int | None] = [None] * k
        self.diverged_at: list[int | None] = [None] * k

    def freeze(self, mask: torch.Tensor, epoch: int, diverged: bool = False) -> None:
        new = (mask & ~self.mask).tolist()
        for j, is_new in enumerate(new):
            if is_new:
                self.frozen_at[j] = epoch
                if diverged:
                    self.diverged_at[j] = epoch
        self.mask |= mask
        self.any = any(a is not None for a in self.frozen_at)

    def state_dict(self) -> dict:
        return {"mask": self.mask, "frozen_at": self.frozen_at, "diverged_at": self.diverged_at}

    def load_state_dict(self, state: dict) -> None:
        self.mask.copy_(state["mask"])
        self.frozen_at, self.diverged_at = list(state["frozen_at"]), list(state["diverged_at"])
        self.any = any(a is not None for a in self.frozen_at)

    def all_frozen(self) -> bool:
        return all(a is not None for a in self.frozen_at)

    def snapshot(self) -> list[torch.Tensor] | None:
        return [t.detach().clone() for t in self.tensors] if self.any else None

    def restore(self, saved: list[torch.Tensor] | None) -> None:
        if saved is None:  # every step, before any member froze: no torch.no_grad to enter (~4 us of Python)
            return
        keep = self.mask.view(self.k, 1)
        with torch.no_grad():
            for t, old in zip(self.tensors, saved):
                view = t.view(self.k, -1)
                view.copy_(torch.where(keep, old.view(self.k, -1), view))


class Schedule:
    """Minibatch order per seed: an independent permutation of the training split every epoch. With `bootstrap`,
    a permutation of the seed's own resample (n draws with replacement, from its own generator: the same resample
    for the baseline and regularized members of a seed, and in any population)."""

    def __init__(self, seeds: list[int], n_train: int, batch_size: int, device, bootstrap: bool = False):
        self.unique = list(dict.fromkeys(seeds))
        self.slot = torch.tensor([self.unique.index(s) for s in seeds], device=device)
        self.gens = [rng.generator(s, "order") for s in self.unique]
        self.resamples = (
            [torch.randint(n_train, (n_train,), generator=rng.generator(s, "bootstrap")) for s in self.unique]
            if bootstrap
            else None
        )
        self.n, self.b, self.device = n_train, batch_size, device
        self.steps_per_epoch = n_train // batch_size  # drop the ragged last batch: every member sees B examples

    def epoch(self) -> torch.Tensor:
        """[steps_per_epoch, K, B] indices for the next epoch, one copy to the device per epoch; steps first, so
        that a step's [K, B] indices are one contiguous block (a strided one would be copied again every step)."""
        used = self.steps_per_epoch * self.b
        perms = torch.stack([torch.randperm(self.n, generator=g)[:used] for g in self.gens])
        if self.resamples is not None:  # positions in the resample -> examples of the training split
            perms = torch.stack([r[p] for r, p in zip(self.resamples, perms)])
        perms = perms.view(len(self.gens), self.steps_per_epoch, self.b).to(self.device, non_blocking=True)
        return perms[self.slot].transpose(0, 1).contiguous()

    def state_dict(self) -> list[torch.Tensor]:
        return [g.get_state() for g in self.gens]

    def load_state_dict(self, states: list[torch.Tensor]) -> None:
        for g, st in zip(self.gens, states):
            g.set_state(st.cpu())


def compiled(model, trainer, device):
    """The model's forward, through torch.compile when asked; on CUDA with CUDA graphs (mode reduce-overhead),
    which removes the per-kernel launch cost that dominates small members' steps."""
    if not trainer.compile:
        return model
    mode = "reduce-overhead" if torch.device(device).type == "cuda" else None
    return torch.compile(model, mode=mode, dynamic=False)


def train_population(
    splits, model_cfg, trainer, members: list[Member], device, progress=None, ckpt=None
) -> PopulationResult:
    """Train the population; `ckpt` (a checkpoint.Checkpointing) saves every few epochs and resumes from a save.

    On the CPU, with denormal floats flushed to zero on every thread (trainer.flush_denormals; see denormals.py)."""
    with denormals.flushing(torch.device(device).type == "cpu" and trainer.flush_denormals) as flushed:
        return _train_population(splits, model_cfg, trainer, members, device, progress, ckpt, flushed)


def _train_population(splits, model_cfg, trainer, members, device, progress, ckpt, flushed) -> PopulationResult:
    # ---- setup: model, optimizer, step function, freezer, schedule; resume from a checkpoint ----
    run = Training(splits, model_cfg, trainer, members, device, flushed)
    run.resume(ckpt)
    step = run.step_function()
    if progress is not None:
        progress.start(run.total_epochs, run.k)

    # ---- the loop: steps, evaluation (divergence, early stopping), checkpoints ----
    for epoch in range(run.first_epoch(), run.total_epochs + 1):
        run.epoch = epoch
        order = run.schedule.epoch()
        for i in range(min(run.schedule.steps_per_epoch, run.total_steps - run.step)):
            step(order[i])
            run.step += 1
        if epoch % trainer.eval_every == 0 or run.step == run.total_steps:
            run.eval_epoch(epoch, progress)
        if ckpt is not None and (ckpt.due(epoch) or run.freezer.all_frozen()) and run.step < run.total_steps:
            checkpoint.save(ckpt, run.state_dict())
        if run.freezer.all_frozen():
            break

    # ---- wrap-up: end-of-training hooks, final metrics, history rows ----
    if progress is not None:
        progress.close()
    return run.result()


class Training:
    """One population's training: what it is made of (model, regularizers, optimizer, step), where it is (epoch,
    step, history, divergence flags), and the loop's steps, evaluations and checkpoints."""

    def __init__(self, splits, model_cfg, trainer, members: list[Member], device, flushed: bool):
        self.t0 = time.perf_counter()
        self.splits, self.trainer, self.members, self.device, self.flushed = splits, trainer, members, device, flushed
        self.k = k = len(members)
        n_train = len(splits.y_train)
        if trainer.batch_size > n_train:
            raise UsageError(f"trainer.batch_size={trainer.batch_size}: larger than the training split ({n_train})")
        seeds = [m.seed for m in members]
        self.seeds_t = torch.tensor(seeds, device=device, dtype=torch.int64)

        self.regs = build_regularizers(members, device)
        hints = ModelHints.plain(k)
        for r in self.regs:
            r.hints(hints)
        self.model = models.build(model_cfg, splits.input_shape, splits.kind, splits.n_classes, seeds, hints)
        self.model = self.model.to(device)
        self.fast = trainer.fast and torch_private.usable()
        self.forward_backward, self.opt = self._step_and_optimizer()
        self.freezer = Freezer(self.model, k, device)

        self.schedule = Schedule(seeds, n_train, trainer.batch_size, device, splits.bootstrap)
        self.gather = Gather(splits)
        self.total_steps = trainer.steps or trainer.epochs * self.schedule.steps_per_epoch
        self.total_epochs = math.ceil(self.total_steps / self.schedule.steps_per_epoch)

        self.history: list[tuple[int, int, torch.Tensor]] = []  # (epoch, step, [K, 6] metrics) per evaluation
        self.kept: dict | None = None  # what the last evaluation kept of its logits (evaluate's `keep`)
        self.step = 0
        self.epoch = 0
        self.elapsed = 0.0  # training time spent before a resume (wall_time)
        # every step's loss finite so far, per member; read at evaluations (one in-place AND a step: the step's flags)
        self.finite = torch.ones(k, dtype=torch.bool, device=device)
        # Under torch.compile and in a CUDA graph the step number is a device tensor the step increments itself, so
        # the compiled code neither recompiles per step nor syncs, and a replayed graph sees the step it is at
        self.graphed = self.fast and torch.device(device).type == "cuda" and trainer.cuda_graph and not trainer.compile
        self.graphed = self.graphed and getattr(self.model, "graphable", True)  # not a user's module (models/func.py)
        self.step_t = None

    def _step_and_optimizer(self):
        """The forward-and-backward function and the optimizer, plain or fast; sets what one_step needs to know."""
        model, trainer, regs, device = self.model, self.trainer, self.regs, self.device
        # bf16 autocast, opt-in: matmuls in bfloat16, parameters, optimizer state and losses stay fp32
        bf16 = trainer.precision == "bf16"
        autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16)
        penalised = [r for r in regs if r.has_penalty()]
        self.clear_grads = True  # autograd adds into .grad, and must start every step from zero
        self.layerwise = False
        if not self.fast:  # eager autograd, the penalties in the loss; torch's own optimizer on each parameter
            self.penalised, self.layers = [], []
            penalties = [(r, model) for r in penalised]
            return partial(autograd_step, model, autocast, penalties=penalties), optim.plain(model, trainer)

        self.penalised = penalised  # their gradients added in closed form after the backward pass
        # the hand-written step, where the model has one and no member needs autograd (batch norm, for one)
        hand_ok = not trainer.compile and trainer.precision == "fp32" and not any(r.needs_autograd() for r in regs)
        by_hand = model.fast_step(self.flushed) if hand_ok else None
        # Adam and SGD are element-wise: one optimizer over [K, ...] tensors updates each member as its own would.
        # A hand-written step on the CPU updates each layer as soon as its gradients are complete (while they are
        # in the cache), when every penalty can add one layer's gradients alone; on a GPU the step is one graph.
        self.layers = by_hand.layers() if by_hand is not None else []
        opt = optim.make(model, trainer, self.layers)
        if by_hand is None:
            return partial(autograd_step, compiled(model, trainer, device), autocast), opt
        self.clear_grads = False  # the hand-written step writes every gradient
        self.layerwise = (
            torch.device(device).type == "cpu"
            and all(r.layerwise() for r in regs)
            and len(opt.flat.blocks) == len(self.layers)  # every parameter in a layer: the layers' steps are the step
        )
        return by_hand, opt

    def resume(self, ckpt) -> None:
        state = checkpoint.load(ckpt, self.device)
        if state is not None:
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["optimizer"])
            self.freezer.load_state_dict(state["freezer"])
            self.schedule.load_state_dict(state["schedule"])
            for r, rs in zip(self.regs, state["regularizers"]):
                r.load_state_dict(rs)
            self.history = [tuple(h) for h in state["history"]]
            self.finite.copy_(~state["bad"])
            self.epoch, self.step, self.elapsed = state["epoch"], state["step"], state["elapsed"]
            log.info("resumed from %s at epoch %d", ckpt.path, self.epoch)
        if (self.fast and self.trainer.compile) or self.graphed:
            self.step_t = torch.tensor(self.step, dtype=torch.int64, device=self.device)

    def wall_time(self) -> float:
        return self.elapsed + time.perf_counter() - self.t0

    def state_dict(self) -> dict:
        """What a checkpoint holds: everything the rest of the run depends on."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "freezer": self.freezer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "regularizers": [r.state_dict() for r in self.regs],
            "history": [list(h) for h in self.history],
            "bad": ~self.finite,
            "epoch": self.epoch,
            "step": self.step,
            "elapsed": self.wall_time(),
        }

    def first_epoch(self) -> int:
        # a checkpoint taken when every member had stopped leaves nothing to train
        return self.total_epochs + 1 if self.freezer.all_frozen() else self.epoch + 1

    def step_function(self):
        """one_step, or on CUDA (fast path) one_step captured once as a graph and replayed."""
        if not self.graphed:
            return self.one_step
        idx_like = torch.empty(self.k, self.trainer.batch_size, dtype=torch.int64, device=self.device)
        graph = cuda_graph.CudaGraphStep(self.one_step, idx_like)
        return lambda idx: graph(idx, key=self.freezer.any)  # frozen members add a snapshot and restore: a new graph

    def update_layer(self, i: int) -> None:
        """Layer i's data gradients are complete (fast path, layerwise): its penalties' gradients, then Adam."""
        for r in self.penalised:
            r.penalty_grad(self.model, self.layers[i])
        self.opt.step_group(i)

    def one_step(self, idx: torch.Tensor) -> None:
        """One training step of every member: minibatch [K, B] indices -> updated parameters."""
        model, regs, opt = self.model, self.regs, self.opt
        batch = Batch(*self.gather(idx), self.splits.n_classes, self.splits.kind)
        step = self.step if self.step_t is None else self.step_t
        ctx = Context(seeds=self.seeds_t, step=step, train=True, fast=self.fast)
        saved = self.freezer.snapshot()
        for r in regs:
            batch = r.transform(batch, ctx)
        for r in regs:  # before the forward pass: e.g. weight noise perturbs the weights
            r.before_step(model, ctx)
        if self.layerwise and opt.stepwise:  # from the second step: the first makes the optimizer's state
            # no after_backward to call: a regularizer with one turns layerwise off (Regularizer.layerwise)
            opt.count_step()
            self.finite.logical_and_(self.forward_backward(batch.x, batch.y, ctx, self.update_layer))
        else:
            self.finite.logical_and_(self.forward_backward(batch.x, batch.y, ctx))
            for r in regs:  # after the backward pass: e.g. weight noise restores the clean weights
                r.after_backward(model, ctx)
            for r in self.penalised:
                r.penalty_grad(model)
            opt.step()
        if self.clear_grads:
            opt.zero_grad()
        for r in regs:
            r.post_step(model, self.trainer.lr)
        self.freezer.restore(saved)
        if self.step_t is not None:
            self.step_t.add_(1)

    def eval_epoch(self, epoch: int, progress) -> None:
        """Metrics on the whole splits; members that diverged or that a hook stops (early stopping) freeze."""
        # the last evaluation keeps what the end of training reads from its logits (margins, test predictions)
        keep = {"log_probs": self.trainer.predictions} if self.step == self.total_steps else None
        metrics = evaluate(self.model, self.splits, self.seeds_t, self.fast, keep)
        self.kept = keep
        self.history.append((epoch, self.step, metrics))
        self.finite &= torch.isfinite(metrics).all(1)
        self.freezer.freeze(~self.finite, epoch, diverged=True)
        for r in self.regs:
            stop = r.on_eval(self.model, epoch, metrics)
            if stop is not None:
                self.freezer.freeze(stop.to(self.device), epoch)
        if progress is not None:
            progress.update(epoch, metrics[:, COLUMNS.index("val_acc")].nan_to_num(0.0).max().item())

    def result(self) -> PopulationResult:
        """The end-of-training hooks (e.g. restoring best weights), final metrics, and the history as rows."""
        changed = [r.on_end(self.model) for r in self.regs]  # a list, so every hook runs
        kept = self.kept  # the last evaluation's margins and test predictions, when it ran at the last step
        if kept is None or self.freezer.any or any(changed):
            kept = {"log_probs": self.trainer.predictions}
            final = evaluate(self.model, self.splits, self.seeds_t, self.fast, kept)
        else:
            final = self.history[-1][2]
        extras: list[dict] = [{"complexity": c} for c in complexity.measure(self.model, kept["margins"])]
        if self.trainer.predictions:  # the test split's log-probabilities, float16: bias-variance in the report
            for j, lp in enumerate(kept["log_probs"].to(torch.float16).cpu().numpy()):
                extras[j]["predictions"] = lp
        for r in self.regs:
            for j, fields in enumerate(r.record() or []):
                extras[j].update(fields)
        rows = []
        for epoch, step, metrics in self.history:
            values = metrics.cpu().tolist()
            for j, m in enumerate(self.members):
                row = {"member": j, "arm": m.arm, "seed": m.seed, "epoch": epoch, "step": step}
                rows.append({**row, **dict(zip(COLUMNS, values[j]))})
        return PopulationResult(
            members=self.members,
            final=final.cpu(),
            frozen_at=self.freezer.frozen_at,
            diverged_at=self.freezer.diverged_at,
            history=rows,
            extras=extras,
            steps=self.step,
            epochs=self.epoch,
            wall_time=self.wall_time(),
            device=str(self.device),
            denormals_flushed=self.flushed,
        )
