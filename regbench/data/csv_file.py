"""The user's own CSV file: a header row, one example per row, a named label column and numeric features.

Every column other than `label_column` is a feature; the data are a table (per-feature standardisation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from regbench.data.base import RawData
from regbench.data.files import FileConfig, class_indices, existing, finish, finite_float32
from regbench.errors import RunError, UsageError
from regbench.schema import param


@dataclass
class CsvConfig(FileConfig):
    name: str = "csv"
    label_column: str = param("label", "the column holding class indices 0, 1, ...")


def read(path: str, cfg: CsvConfig, columns: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    p = existing(path)
    try:
        df = pd.read_csv(p)
        # the header as written: pandas renames a repeated name (label, label -> label, label.1), and the copy of
        # the label column would then be trained on as a feature
        header = pd.read_csv(p, header=None, nrows=1, dtype=str, keep_default_na=False).iloc[0].tolist()
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RunError(f"{path}: not a readable CSV file ({first})") from None
    repeated = [c for c in dict.fromkeys(header) if header.count(c) > 1]
    if repeated:
        raise RunError(
            f"{path}: column {repeated[0]!r} appears {header.count(repeated[0])} times in the header; "
            "column names must be unique"
        )
    if cfg.label_column not in df.columns:
        columns = ", ".join(map(str, df.columns))
        raise UsageError(f"dataset.label_column={cfg.label_column!r}: no such column in {path}; columns: {columns}")
    if len(df) == 0:
        raise RunError(f"{path}: no rows of data")
    features = [c for c in df.columns if c != cfg.label_column]
    if not features:
        raise RunError(f"{path}: no feature columns besides {cfg.label_column!r}")
    if columns is not None and features != columns:
        raise RunError(f"{path}: feature columns {features} differ from the training file's {columns}")
    for c in features:
        col = df[c]
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            i = int(np.flatnonzero(pd.to_numeric(col, errors="coerce").isna().to_numpy())[0])
            raise RunError(f"{path}: column {c!r} is not numeric ({col.iloc[i]!r} on line {i + 2})")
        if col.isna().any():
            raise RunError(f"{path}: column {c!r} has an empty value on line {int(np.flatnonzero(col.isna())[0]) + 2}")
    labels = df[cfg.label_column]
    if labels.isna().any():
        raise RunError(f"{path}: label missing on line {int(np.flatnonzero(labels.isna())[0]) + 2}")
    y = class_indices(labels.to_numpy(), path, lambda i: f"line {i + 2}")  # line 1 is the header

    def cell(i: int) -> str:
        row, col = divmod(i, len(features))
        return f"column {features[col]!r}, line {row + 2}"

    return finite_float32(df[features].to_numpy(), path, cell), y, features


def load(cfg: CsvConfig) -> RawData:
    x, y, features = read(cfg.path, cfg)
    test = read(cfg.test_path, cfg, features)[:2] if cfg.test_path else None
    return finish(cfg, (x, y), test, "table", cfg.path, unit="rows")
