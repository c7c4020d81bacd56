"""Checks of a `regbench run` command line before Hydra starts, so that bad input costs nothing.

Every job a command would launch (a multirun's sweep expanded, with an experiment preset's sweeper params) is
composed and validated first, then checked against what exists (the device, the data and its training split's
size); the first problem is one line (exit code 2, or 1 for a missing GPU or data file) and no folder is created.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
import sys
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from regbench import singles
from regbench.errors import RunError, UsageError, unknown_name
from regbench.paths import config_dir

GROUPS = ("dataset", "model", "regularizers", "trainer", "experiment", "logger")
# Hydra flags that only print something, or take a value: no job runs, or the value is not an override.
PRINT_ONLY = {"--cfg", "-c", "--info", "-i", "--hydra-help", "--help", "-h", "--shell-completion", "-sc"}
TAKES_VALUE = {
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--info",
    "-i",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--experimental-rerun",
}
# Flags Hydra itself takes besides these (they carry no value of their own).
FLAGS = {"-m", "--multirun", "--run", "-r", "--resolve", "--version"} | PRINT_ONLY | TAKES_VALUE
# Validating a sweep composes each job; past this many, the rest are left to the jobs themselves.
MAX_CHECKED = 512


def options(group: str) -> list[str]:
    root = Path(config_dir()) / group
    return sorted(p.stem for p in root.glob("*.yaml")) if root.is_dir() else []


def split_args(args: list[str]) -> tuple[list[str], bool, bool]:
    """(overrides, multirun, print_only) from `regbench run`'s arguments."""
    overrides, multirun, print_only, skip = [], False, False, False
    for a in args:
        if skip:
            skip = False
            continue
        if a in ("-m", "--multirun"):
            multirun = True
        elif a in PRINT_ONLY or a.split("=")[0] in PRINT_ONLY:
            print_only = True
            skip = a in TAKES_VALUE
        elif a in TAKES_VALUE:
            skip = True
        elif a.startswith("-"):
            if a.split("=")[0] not in FLAGS:
                raise UsageError(f"{a}: unknown option; see `regbench run --help`")
        else:
            overrides.append(a)
    return overrides, multirun, print_only


def _parse(overrides: list[str], parser: OverridesParser) -> list:
    """Hydra's parse of each override, one line naming a malformed one."""
    parsed = []
    for o in overrides:
        try:
            parsed.append(parser.parse_override(o))
        except HydraException as e:
            detail = str(e).splitlines()[0]
            raise UsageError(f"{o}: not a valid override ({detail}); expected key=value or group=[a,b]") from None
        if not parsed[-1].key_or_group:
            raise UsageError(f"{o}: no key before '='; expected key=value or group=[a,b]")
    return parsed


def _check_group_values(parsed) -> None:
    for o in parsed:
        key = o.key_or_group.split("@")[0]
        if key not in GROUPS or o.is_delete():
            continue
        known = options(key)
        values = list(o.sweep_iterator()) if o.is_sweep_override() else [o.value()]
        for v in values:
            for name in v if isinstance(v, list) else [v]:
                if str(name) not in known:
                    raise unknown_name(key, str(name), known)


def _compose(overrides: list[str], with_hydra: bool = False):
    try:
        return compose("config", overrides=overrides, return_hydra_config=with_hydra)
    except (HydraException, OmegaConfBaseException) as e:
        raise _composition_error(e, overrides) from None


def _composition_error(e: Exception, overrides: list[str]) -> UsageError:
    text = f"{e} {e.__cause__ or ''}"
    m = re.search(r"Could not override '([^']+)'", text)
    if m and "not in struct" in text:
        key = m.group(1)
        parent, _, leaf = key.rpartition(".")
        rest = [o for o in overrides if not o.lstrip("+~").startswith(key)]
        try:
            node = compose("config", overrides=rest)
            node = OmegaConf.select(node, parent) if parent else node
            allowed = ", ".join(node.keys()) if node is not None else ""
        except Exception:  # noqa: BLE001 - the listing is a courtesy; the key is named either way
            allowed = ""
        return UsageError(f"{key}: unknown key" + (f"; allowed: {allowed}" if allowed else ""))
    first = next((line.strip() for line in str(e).splitlines() if line.strip()), str(e))
    return UsageError(first)


def check(args: list[str]) -> int:
    """Validate every job the command would run; returns how many were checked (0: a print-only command)."""
    overrides, multirun, print_only = split_args(args)
    if print_only:
        return 0
    # Only here, past the print-only flags: validation and the data checks import torch (seconds), --cfg need not.
    from regbench.experiment import preflight
    from regbench.hydra_app import register_resolvers
    from regbench.job import validated

    register_resolvers()  # hydra.run.dir names the job by ${regbench_run_id:}
    parser = OverridesParser.create()
    _check_group_values(_parse(overrides, parser))
    with initialize_config_dir(config_dir(), version_base="1.3", job_name="regbench"):
        if not multirun:
            cfg = _compose(overrides, with_hydra=True)
            _warn_unused_sweep(cfg)
            preflight(validated(cfg))
            _check_writable(cfg, "hydra.run.dir")
            return 1
        # Hydra's basic sweeper: the preset's hydra.sweeper.params first, the command line's sweeps win.
        base = _compose([o for o in overrides if not _is_sweep(o, parser)], with_hydra=True)
        batched = check_launcher(OmegaConf.select(base, "hydra.launcher"))
        params = OmegaConf.select(base, "hydra.sweeper.params") or {}
        preset = [f"{k}={v}" for k, v in params.items()]
        # a glob(*) sweep (experiment=singles) lists its group's options through the config loader
        listing = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
        jobs = sweep_jobs(listing.parse_overrides(preset + overrides))
        _check_group_values(parser.parse_overrides(preset))
        if not jobs:
            empty = [o for o in preset + overrides if _is_sweep(o, parser) and not _sweep_values(o, parser)]
            raise UsageError(f"{(empty or ['-m'])[0]}: the sweep has no jobs; give each swept key at least one value")
        refused: dict[str, UsageError] = {}  # singles cells' regularizer -> its refusal: all named in one hint
        for job in jobs[:MAX_CHECKED]:
            spec = validated(_compose(list(job)))
            if batched and spec.trainer.checkpoint_every is not None:
                raise UsageError(
                    f"trainer.checkpoint_every={spec.trainer.checkpoint_every}: not supported by the batched sweep "
                    "launcher; use hydra/launcher=basic (or joblib/submitit) for per-job checkpoints"
                )
            try:
                preflight(spec)
            except UsageError as e:
                name = _refused_cell(e, job)
                if name is None:
                    raise
                refused.setdefault(name, e)
        if refused:
            cells = [o for o in listing.parse_overrides(preset + overrides) if _is_cells(o)]
            last = cells[-1] if cells else None
            raise _with_cell_hint(
                next(iter(refused.values())),
                list(refused),
                last.value() if last else None,
                last.key_or_group if last else CELL_GROUPS[0],
            )
        first = _compose(list(jobs[0]), with_hydra=True)
        _check_writable(first, "hydra.sweep.dir")
        _check_writable(first, "hydra.sweep.dir", "hydra.sweep.subdir")  # where the jobs' folders go
        return len(jobs)


def sweep_jobs(parsed) -> list[list[str]]:
    """Each job's overrides in the order Hydra's basic sweeper launches them: one value list per key, in the order
    the keys first appear (a later override of a key replaces its values), and their product, last key fastest."""
    values: dict[str, list[str]] = {}
    for o in parsed:
        key = o.get_key_element()
        if not o.is_sweep_override():
            values[key] = [f"{key}={o.get_value_element_as_str()}"]
        elif o.is_discrete_sweep():
            try:
                values[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
            except HydraException as e:  # e.g. glob() over a key that is not a config group
                raise UsageError(f"{o.input_line}: {str(e).splitlines()[0]}; list the values") from None
        else:
            raise UsageError(f"{o.input_line}: an interval sweeps nothing under the basic sweeper; list the values")
    return [list(job) for job in itertools.product(*values.values())]


CELL_GROUPS = tuple(f"{singles.PARENT}/{g}" for g in (singles.NAME, singles.TUNE))  # the presets' cells


def _refused_cell(error: UsageError, job: list[str]) -> str | None:
    """The regularizer of a preset's cell (singles', tuned's) that the data or the model refuses (cutout on a
    table, stochastic depth on a model without residual blocks), or None for any other error."""
    cell = next((o.split("=", 1)[1] for o in job if o.lstrip("+").split("=")[0] in CELL_GROUPS), None)
    name = str(error).split(":")[0].removeprefix("regularizers.")
    if cell is None or not str(error).startswith("regularizers.") or not cell.startswith(name):
        return None
    return name


def _is_cells(o) -> bool:
    return o.key_or_group in CELL_GROUPS


def _with_cell_hint(error: UsageError, names: list[str], cells, group: str = CELL_GROUPS[0]) -> UsageError:
    """The first refusal, with the override that leaves every refused regularizer's cells out of the sweep, and
    whatever the sweep's glob of cells (`cells`, a hydra Glob, or None) left out already: singles.yaml leaves out
    stochastic depth's, so a hint to leave out cutout's must not bring them back."""
    include = list(getattr(cells, "include", None) or ["*"])
    exclude = list(getattr(cells, "exclude", None) or [])
    exclude += [f"{n}*" for n in names if f"{n}*" not in exclude]
    inc = include[0] if len(include) == 1 else f"[{','.join(include)}]"
    exc = exclude[0] if len(exclude) == 1 else f"[{','.join(exclude)}]"
    which = "its cells" if len(names) == 1 else f"the cells of {', '.join(names)}"
    return UsageError(f"{error}; leave {which} out of the sweep with '+{group}=glob({inc},exclude={exc})'")


# Counts among the launchers' settings (hydra.launcher.<key>, where the chosen launcher has the key): the least
# allowed and how to say it. joblib's n_jobs is apart: any integer but 0 (-1 one process per core, -2 ...).
LAUNCHER_COUNTS = {
    "memory_budget_mb": (1, "an integer >= 1"),
    "cpus_per_task": (1, "an integer >= 1"),
    "tasks_per_node": (1, "an integer >= 1"),
    "gpus_per_node": (0, "an integer >= 0"),
    "timeout_min": (1, "an integer >= 1"),
}


def check_launcher(launcher) -> bool:
    """Refuse launcher settings the launcher would fail on mid-sweep (or take silently); True for regbench's own
    batched launcher."""
    if launcher is None:
        return False
    for key, (least, allowed) in LAUNCHER_COUNTS.items():
        value = launcher.get(key)
        if key in launcher and value is not None and (not _is_int(value) or value < least):
            raise UsageError(f"hydra.launcher.{key}={value}: not a usable value; allowed: {allowed}")
    n_jobs = launcher.get("n_jobs")
    if "n_jobs" in launcher and n_jobs is not None and (not _is_int(n_jobs) or n_jobs == 0):
        raise UsageError(
            f"hydra.launcher.n_jobs={n_jobs}: no process to run jobs in; "
            "allowed: an integer >= 1, or -1 (one per core), -2 (all cores but one), ..."
        )
    return str(launcher.get("_target_", "")).endswith(".RegbenchLauncher")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_sweep(override: str, parser: OverridesParser) -> bool:
    return parser.parse_override(override).is_sweep_override()


def _sweep_values(override: str, parser: OverridesParser) -> list:
    return list(parser.parse_override(override).sweep_iterator())


def _warn_unused_sweep(cfg) -> None:
    """An experiment preset is a sweep (hydra.sweeper.params); without -m Hydra runs only its base job."""
    choice = OmegaConf.select(cfg, "hydra.runtime.choices.experiment")
    if choice and OmegaConf.select(cfg, "hydra.sweeper.params"):
        print(
            f"regbench: warning: experiment={choice}: the preset's sweep only runs with -m "
            f"(regbench run -m experiment={choice}); running its single base job",
            file=sys.stderr,
        )


def _short(value: str, limit: int = 80) -> str:
    return value if len(value) <= limit else f"{value[: limit - 20]}...({len(value)} characters)"


def _check_writable(cfg, *keys: str) -> None:
    """Make the folder Hydra will make (keys joined: the run dir, the sweep dir, a sweep job's dir) and write in it:
    the file system itself says whether the path is too long, under a file, or read-only."""
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(cfg)  # for ${hydra:...} in the dirs, as Hydra does before making them
    try:
        parts = [str(OmegaConf.select(cfg, k, throw_on_missing=True)) for k in keys]
    except OmegaConfBaseException as e:
        raise UsageError(f"{keys[-1]}: {str(e).splitlines()[0]}") from None
    path = os.path.normpath(os.path.join(*parts))
    key = keys[-1]
    missing, made = [], []
    try:
        head = os.path.abspath(path)
        while not os.path.lexists(head) and os.path.dirname(head) != head:
            missing.append(head)
            head = os.path.dirname(head)
        for d in reversed(missing):
            os.mkdir(d)
            made.append(d)
        with tempfile.TemporaryFile(dir=os.path.abspath(path)):  # Hydra writes .hydra/ and the log there
            pass
    except OSError as e:
        _remove(made)
        cls = UsageError if e.errno == errno.ENAMETOOLONG else RunError
        why = e.strerror or str(e)
        raise cls(f"{key}={_short(path)}: cannot make this folder ({why}); choose another with {key}=PATH") from None
    # The job starts next and makes the parents again; removing only the leaf (a sweep's has another random suffix
    # than Hydra's) leaves no window where a parallel run's freshly made folder vanishes under it.
    _remove(made[-1:])


def _remove(folders: list[str]) -> None:
    for d in reversed(folders):
        with contextlib.suppress(OSError):
            os.rmdir(d)


def compose_job(overrides: list[str]):
    """One job's config from command-line overrides, inside an initialized Hydra (the Python API): unknown group
    options and composition errors as the command's one-line UsageErrors."""
    _check_group_values(_parse(overrides, OverridesParser.create()))
    return _compose(list(overrides))
