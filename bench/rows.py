"""The benchmark's model rows: models other than the MLP, each regbench against a textbook loop on one small sweep.

Every row trains the same sweep on both sides (ROW_SETTINGS x ROW_SEEDS, the same Adam steps and batch, on the
same thread count): the textbook side one plain nn.Module and one torch.optim.Adam per run, `loss.item()` every
step, runs one after another; regbench the same runs as sweep jobs through `sweep.train_jobs`, with the
trainer.batching the row asks for (auto by default: the choice is printed, and its one-off measurement, cached per
machine like cudnn.benchmark, is timed apart from the sweep).
  cnn-mnist1d, cnn-digits: regbench's CNN (models/cnn.py) against the same layers as a plain nn.Module;
  resnet: regbench's ResNet on synthetic 3x32x32 images, at a small width (when the model is registered);
  torch: a user's nn.Module through torch.func (model=torch, when registered) against the module itself.
"""

from __future__ import annotations

import importlib
import statistics
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from torch import nn

from regbench import data, models, regularizers, sweep
from regbench.config import validate_config
from regbench.models.base import ModelHints
from regbench.models.layers import Context
from regbench.paths import config_dir
from regbench.train import batching
from regbench.train.engine import build_regularizers
from regbench.train.population import Member

ROW_SETTINGS = [("l2", "strength", 1e-4), ("l2", "strength", 1e-3), ("dropout", "p", 0.1), ("dropout", "p", 0.2)]
ROW_SEEDS = 2
USER_MODEL = "regbench.models.examples:SmallConvNet"


@dataclass
class Row:
    name: str
    overrides: list[str]  # dataset and model
    needs: str = ""  # a model that must be registered for the row to run
    steps_divisor: int = 1  # a row whose step is expensive runs fewer steps (said in its line)
    settings: tuple = tuple(ROW_SETTINGS)  # (regularizer, key, value) per job: what the model has places for


ROWS = {
    "cnn-mnist1d": Row("cnn-mnist1d", ["dataset=mnist1d", "model=cnn"]),
    "cnn-digits": Row("cnn-digits", ["dataset=digits", "model=cnn"]),
    # a ResNet-10 at width 16 (a few minutes on 1 core at ResNet-18's default width 64 would be the bench alone);
    # it has no dropout layers, so its sweep is L2 at four strengths
    "resnet": Row(
        "resnet",
        ["model=resnet", "model.depth=10"],
        needs="resnet",
        steps_divisor=10,
        settings=tuple(("l2", "strength", s) for s in (1e-5, 1e-4, 1e-3, 1e-2)),
    ),  # fmt: skip
    "torch": Row("torch", ["dataset=digits", "model=torch", f"model.target={USER_MODEL}"], needs="torch"),
}


def synthetic_images(folder: Path, n: int = 1200, classes: int = 10) -> Path:
    """3x32x32 images: a fixed random template per class plus noise, learnable within a few hundred steps."""
    rng = np.random.default_rng(0)
    templates = rng.normal(size=(classes, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, classes, n)
    x = templates[y] + 2.0 * rng.normal(size=(n, 3, 32, 32)).astype(np.float32)
    path = folder / "synthetic32.npz"
    np.savez(path, x=x, y=y)
    return path


def small_width(model: str) -> list[str]:
    """Overrides that shrink a model's width to a benchmark's size, for whichever width field its schema has."""
    names = {f.name for f in fields(models.get(model).schema)}
    return [f"model.{k}={v}" for k, v in (("width", 16), ("channels", 16), ("base_width", 16)) if k in names][:1]


def cnn_module(cfg, input_shape, kind, n_classes, p: float) -> nn.Module:
    """regbench's CNN (models/cnn.py) written the textbook way: the same convolutions, ReLU, dropout and head."""
    conv = nn.Conv1d if kind == "sequence" else nn.Conv2d
    c_in, spatial = (1, list(input_shape)) if kind == "sequence" else (input_shape[0], list(input_shape[1:]))
    layers: list[nn.Module] = [nn.Unflatten(1, (1, -1))] if kind == "sequence" else []
    pad = cfg.kernel_size // 2
    for _ in range(cfg.depth):
        layers += [conv(c_in, cfg.channels, cfg.kernel_size, cfg.stride, pad), nn.ReLU(), nn.Dropout(p)]
        spatial = [(s + 2 * pad - cfg.kernel_size) // cfg.stride + 1 for s in spatial]
        c_in = cfg.channels
    layers += [nn.Flatten(), nn.Linear(cfg.channels * int(np.prod(spatial)), n_classes)]
    return nn.Sequential(*layers)


class OneMember(nn.Module):
    """A registered model with one member, as a plain module: [B, ...] -> [B, classes]. For a model whose textbook
    twin this file does not write out (the ResNet): the same network, trained here the textbook way."""

    def __init__(self, spec, splits, reg: str, key: str, value, seed: int):
        super().__init__()
        member = Member(reg, seed, {reg: _reg_cfg(spec, reg, key, value)})
        hints = ModelHints.plain(1)
        for r in build_regularizers([member], "cpu"):
            r.hints(hints)
        self.net = models.build(spec.model, splits.input_shape, splits.kind, splits.n_classes, [seed], hints)
        self.seed, self.step = torch.tensor([seed]), 0

    def forward(self, x):
        self.step += self.training
        return self.net(x.unsqueeze(0), Context(seeds=self.seed, step=self.step, train=self.training, fast=False))[0]


def _reg_cfg(spec, reg, key, value):
    cfg = regularizers.get(reg).Config()
    setattr(cfg, key, value)
    return cfg


def textbook_module(row: Row, spec, splits, reg, key, value, seed) -> nn.Module:
    p = value if reg == "dropout" else 0.0
    if spec.model.name == "cnn":
        return cnn_module(spec.model, splits.input_shape, splits.kind, splits.n_classes, p)
    if spec.model.name in ("resnet", "vgg"):  # the plain nn.Module regbench trains (models/images.py)
        return models.get(spec.model.name).cls.module(spec.model, splits.input_shape, splits.n_classes)
    if spec.model.name == "torch":
        module_name, cls_name = USER_MODEL.split(":")
        try:
            module = getattr(importlib.import_module(module_name), cls_name)()
        except TypeError:  # a constructor that wants arguments: the model as regbench builds it, one member
            return OneMember(spec, splits, reg, key, value, seed)
        for m in module.modules():
            if isinstance(m, nn.Dropout):
                m.p = p
        return module
    return OneMember(spec, splits, reg, key, value, seed)


def textbook_run(row, spec, splits, reg, key, value, seed, steps, batch, device) -> float:
    torch.manual_seed(seed)
    model = textbook_module(row, spec, splits, reg, key, value, seed).to(device)
    return textbook_train(model, splits, reg, value, steps, batch, device)


def textbook_train(model: nn.Module, splits, reg: str, value: float, steps: int, batch: int, device) -> float:
    """The textbook loop, for the MLP sweep and every row: torch.optim.Adam, a fresh permutation each epoch, an L1
    or L2 penalty on the weights (parameters of 2 dimensions or more) added to the loss, `loss.item()` every step;
    then textbook_eval. Returns the test accuracy."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    weights = [p for p in model.parameters() if p.dim() >= 2]
    x, y = splits.x_train, splits.y_train
    n, step = len(y), 0
    model.train()
    while step < steps:
        perm = torch.randperm(n, device=device)
        for i in range(n // batch):
            if step == steps:
                break
            idx = perm[i * batch : (i + 1) * batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            if reg == "l1":
                loss = loss + value * sum(w.abs().sum() for w in weights)
            if reg == "l2":
                loss = loss + value * sum(w.square().sum() for w in weights)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()  # what a textbook loop logs every step
            step += 1
    return textbook_eval(model, splits)


def textbook_eval(model: nn.Module, splits, chunk: int = 1000) -> float:
    """What regbench reports at the end of a run, the textbook way: loss and accuracy on the whole train,
    validation and test splits in eval mode (regbench's side does this work, so this side does too); returns the
    test accuracy."""
    model.eval()
    metrics = {}
    with torch.no_grad():
        for split in ("train", "val", "test"):
            x, y = splits.split(split)
            logits = torch.cat([model(x[i : i + chunk]) for i in range(0, len(y), chunk)])
            metrics[split] = F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()
    return metrics["test"][1]


def run_row(row: Row, steps: int, batch: int, device, threads: int, mode: str, folder: Path, repeats: int = 1) -> str:
    """One row's line: seconds per run on both sides, the ratio, the batching choice and the thread count."""
    if row.needs and row.needs not in models.MODELS:
        return f"row {row.name}: skipped (model={row.needs} is not registered in this regbench)"
    steps = max(1, steps // row.steps_divisor)
    extra = row.overrides
    if row.name == "resnet":
        extra = [*extra, "dataset=npz", f"dataset.path={synthetic_images(folder)}", *small_width("resnet")]
    jobs = []
    with initialize_config_dir(config_dir(), version_base="1.3"):
        for n, (reg, key, value) in enumerate(row.settings):
            cfg = compose("config", overrides=[
                *extra, f"regularizers=[{reg}]", f"regularizers.{reg}.{key}={value}", f"trainer.seeds={ROW_SEEDS}",
                f"trainer.steps={steps}", f"trainer.batch_size={batch}", "trainer.eval_every=100000",
                f"trainer.device={device.type}", "trainer.progress=off", f"trainer.threads={threads}",
                f"trainer.batching={mode}",
            ])  # fmt: skip
            jobs.append(sweep.Job(n, cfg, validate_config(cfg)))
    spec = jobs[0].spec
    splits = data.load(spec.dataset).to(device)
    members, _, plain = sweep.pool(jobs)
    t0 = time.perf_counter()
    size = batching.chunk_size(splits, spec.model, spec.trainer, members[:plain], device)  # measured once, cached
    choice = f"{batching.describe(size, plain)}, chunks of {size} of {plain}"
    measured = time.perf_counter() - t0

    # The sides take turns, as in the MLP's sweep: textbook blocks with regbench's whole sweep between them, so a
    # machine whose speed drifts (a shared one) is the same machine for both
    runs = [(reg, key, value, spec.trainer.seed + s) for reg, key, value in row.settings for s in range(ROW_SEEDS)]
    tb_time, rb_times, acc_tb = 0.0, [], []
    for n in range(repeats + 1):
        t0 = time.perf_counter()
        acc_tb += [textbook_run(row, spec, splits, *run, steps, batch, device) for run in runs[n :: repeats + 1]]
        tb_time += time.perf_counter() - t0
        if n < repeats:
            t0 = time.perf_counter()
            records = dict(sweep.train_jobs(jobs, budget_bytes=8 << 30))
            rb_times.append(time.perf_counter() - t0)
    tb = tb_time / len(runs)
    rb = statistics.mean(rb_times) / len(runs)  # regbench also trains the shared baselines, and is charged for them
    assert torch.get_num_threads() == threads, "both sides must run on the same threads"
    acc_rb = [m["final"]["test_acc"] for r in records.values() for m in r["members"] if m["arm"] != "baseline"]
    return (
        f"row {row.name}: {threads} threads, {steps} steps, {len(runs)} runs; textbook {tb:.4f} s/run, regbench "
        f"{rb:.4f} s/run (trainer.batching={mode}: {choice}; choice took {measured:.2f} s), ratio {tb / rb:.2f}x "
        f"({tb / (rb * len(runs) / plain):.2f}x per member trained: {plain} members for {len(runs)} runs); "
        f"test acc textbook {statistics.mean(acc_tb):.3f}, regbench {statistics.mean(acc_rb):.3f}"
    )


def run_rows(names: list[str], steps: int, batch: int, device, threads: int, mode: str, repeats: int = 1) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            torch.set_num_threads(threads)
            try:
                print(run_row(ROWS[name], steps, batch, device, threads, mode, Path(tmp), repeats), flush=True)
            except Exception as err:  # noqa: BLE001 - a row that cannot run (a model still in the making) says why
                print(f"row {name}: failed ({type(err).__name__}: {str(err).splitlines()[0][:200]})", flush=True)
