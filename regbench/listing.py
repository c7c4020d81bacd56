"""`regbench list`: every group's options with parameters, defaults and allowed ranges, read from the schemas.

Fields every dataset shares (DatasetConfig) are shown once rather than under each of the datasets, which keeps the
listing readable on an 80-column terminal.
"""

from __future__ import annotations

import dataclasses

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from regbench.errors import UsageError
from regbench.schema import describe


def sections() -> list[tuple[str, type | None, dict[str, tuple[type, str]]]]:
    """(group, schema shared by all its options or None, {option: (schema, summary)})."""
    from regbench import data, loggers, models, regularizers
    from regbench.config import TrainerConfig

    return [
        ("dataset", data.DatasetConfig, {n: (e.schema, e.summary) for n, e in data.DATASETS.items()}),
        ("model", None, {n: (e.schema, e.summary) for n, e in models.MODELS.items()}),
        ("regularizers", None, {n: (c.Config, c.summary) for n, c in regularizers.REGULARIZERS.items()}),
        ("trainer", None, {"default": (TrainerConfig, "optimizer, budget, device and seeds")}),
        ("logger", None, {n: (e.schema, e.summary) for n, e in loggers.LOGGERS.items()}),
    ]


def _rows(table: Table, schema: type, skip: set[str]) -> None:
    for pname, default, allowed, help_ in describe(schema):
        if pname not in skip:
            # cells are Rich markup: a default such as [l2] or a help text with [a, b] must print as typed
            table.add_row(f"  {pname}", *map(escape, (default, allowed, help_)))


def show(what: str | None = None, console: Console | None = None) -> None:
    """Print every group, or only the group or option named by `what`."""
    all_sections = sections()
    groups = {g for g, _, _ in all_sections}
    options = {o for _, _, entries in all_sections for o in entries}
    if what is not None and what not in groups | options:
        raise UsageError(f"list {what}: unknown group or option; known: {', '.join(sorted(groups | options))}")
    console = console or Console()
    for group, shared, entries in all_sections:
        if what not in (None, group) and what not in entries:
            continue
        table = Table(title=group, title_justify="left")
        for col in ("option / parameter", "default", "allowed", "meaning"):
            table.add_column(col, overflow="fold")
        skip = {f.name for f in dataclasses.fields(shared)} if shared else set()
        if shared is not None:
            table.add_row(f"[bold]every {group}[/bold]", "", "", "")
            _rows(table, shared, set())
        for name, (schema, summary) in entries.items():
            if what not in (None, group, name):
                continue
            table.add_section()
            table.add_row(f"[bold]{name}[/bold]", "", "", escape(summary))
            _rows(table, schema, skip)
        console.print(table)
    example = "dataset=digits model=cnn 'regularizers=[l2,dropout]' regularizers.l2.strength=1e-3"
    console.print(f"Choose with e.g. {escape(example)}")
