"""Dataclass schemas with bounds, validated from OmegaConf nodes with the offending key named.

Each config group (dataset, model, every regularizer, trainer) has a dataclass whose fields carry their bounds in
`field` metadata. `validate` turns a composed node into an instance or raises one UsageError line such as
`regularizers.dropout.p=1.5: must be in [0, 1)`. `regbench list` reads the same metadata, so the documented ranges
and the enforced ones cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

from omegaconf import DictConfig, OmegaConf

from regbench.errors import UsageError


def param(
    default,
    help: str,
    *,
    ge=None,
    gt=None,
    le=None,
    lt=None,
    choices=None,
    factory=None,
    numbers=True,
    members=False,
    later=False,
):
    """A schema field: default, one-line help, and the bounds that `validate` enforces.

    numbers=False: the field changes how a job is shown, saved or scheduled, never its numbers (out of the run id,
    of a sweep's pooling and of the report's grouping). members=True: it chooses which members (seeds) run, while a
    given member's numbers stay the same (in the run id; out of pooling and grouping, where members carry it).
    later=True: a field added after records were first written; the run id holds it only when it differs from this
    default, so every job that could run before the field existed keeps its run id (and its complete record).
    """
    meta = {"help": help, "ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices}
    meta |= {"numbers": numbers, "members": members, "later": later}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def describe_range(f: dataclasses.Field) -> str:
    m = f.metadata
    if m.get("choices"):
        return "one of " + ", ".join(map(str, m["choices"]))
    lo = f"[{m['ge']}" if m.get("ge") is not None else f"({m['gt']}" if m.get("gt") is not None else "(-inf"
    hi = f"{m['le']}]" if m.get("le") is not None else f"{m['lt']})" if m.get("lt") is not None else "inf)"
    if lo == "(-inf" and hi == "inf)":
        return ""
    return f"{lo}, {hi}"


def _check_bounds(key: str, value, f: dataclasses.Field) -> None:
    m = f.metadata
    if value is None:
        return
    if m.get("choices") and value not in m["choices"]:
        raise UsageError(f"{key}={value!r}: must be one of {', '.join(map(str, m['choices']))}")
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if isinstance(v, float) and not math.isfinite(v):
            raise UsageError(f"{key}={v}: must be a finite number")
        ok = (
            (m.get("ge") is None or v >= m["ge"])
            and (m.get("gt") is None or v > m["gt"])
            and (m.get("le") is None or v <= m["le"])
            and (m.get("lt") is None or v < m["lt"])
        )
        if not ok:
            raise UsageError(f"{key}={v}: must be in {describe_range(f)}")


def _coerce(key: str, value, tp):
    """Strict-but-friendly typing: ints are accepted for floats, nothing else is converted."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for a in inner:
            try:
                return _coerce(key, value, a)
            except UsageError as e:
                errors.append(e)
        raise errors[0]
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"{key}={value!r}: must be a list")
        (inner,) = args[:1] or (Any,)
        return [_coerce(f"{key}[{i}]", v, inner) for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is dict or origin is dict:
        if isinstance(value, dict):
            return value
        raise UsageError(f"{key}={value!r}: must be a mapping, e.g. {{a: 1}} or +{key}.a=1")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise UsageError(f"{key}={value!r}: must be a number")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise UsageError(f"{key}={value!r}: must be an integer")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UsageError(f"{key}={value!r}: must be true or false")
    if tp is str:
        if isinstance(value, str):
            return value
        raise UsageError(f"{key}={value!r}: must be a string")
    return value


def validate(node: DictConfig | dict | None, schema: type, key: str):
    """Build `schema` from `node`, naming `key.field` in any error; unknown fields list the allowed ones."""
    if node is None:
        node = {}
    data = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    fields = {f.name: f for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise UsageError(f"{key}.{unknown[0]}: unknown key; allowed: {', '.join(fields)}")
    kwargs = {}
    for name, value in data.items():
        full = f"{key}.{name}"
        value = _coerce(full, value, hints[name])
        _check_bounds(full, value, fields[name])
        kwargs[name] = value
    obj = schema(**kwargs)
    check = getattr(obj, "check", None)
    if check is not None:
        check(key)  # cross-field rules, e.g. a minimum that must stay below a maximum
    return obj


def describe(schema: type) -> list[tuple[str, str, str, str]]:
    """(name, default, range, help) for every field of a schema: what `regbench list` prints."""
    rows = []
    for f in dataclasses.fields(schema):
        if f.name == "name":
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        rows.append((f.name, repr(default), describe_range(f), f.metadata.get("help", "")))
    return rows
