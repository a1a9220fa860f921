"""Column types of a table, and the checks that refuse a table the tabular model cannot use.

A column is **numeric** (integer or float dtype) or **categorical** (text, ``category``, ``bool``, or any column
the caller names in ``categorical=``). Anything else (dates, durations, complex numbers, Python objects that are
not text) is refused with a message that says how to fix it. Every check here runs before any training.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from diffsight.errors import DiffsightError

__all__ = ["ColumnKind", "ColumnSpec", "MAX_LEVELS", "check_table", "infer_columns"]

ColumnKind = Literal["numeric", "categorical"]

MAX_LEVELS = 100
"""A text column with more distinct values than this is refused: it is an identifier or free text, not a
category (one-hot coordinates per level would make the model mostly noise)."""


@dataclass(frozen=True)
class ColumnSpec:
    """One column of the table: its name, kind, and (for output) the pandas dtype it came with."""

    name: str
    kind: ColumnKind
    dtype: str


def check_table(frame: object) -> pd.DataFrame:
    """The DataFrame itself after checks that do not depend on column types: a frame, not empty, unique names."""
    if not isinstance(frame, pd.DataFrame):
        raise DiffsightError(f"expected a pandas DataFrame (or a CSV path), got {type(frame).__name__}")
    if frame.shape[1] == 0:
        raise DiffsightError("the table has no columns: give a CSV with a header row and at least one column")
    if frame.shape[0] == 0:
        raise DiffsightError("the table has no rows: give a CSV with at least one data row below the header")
    names = [str(c) for c in frame.columns]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise DiffsightError(f"column names must be unique; repeated: {duplicated}. Rename them in the header.")
    empty = [n for n, col in zip(names, frame.columns, strict=True) if frame[col].isna().all()]
    if empty:
        raise DiffsightError(
            f"column(s) {empty} hold no values at all: nothing can be learned about them; drop them from the table"
        )
    return frame


def _kind_of(series: pd.Series, name: str, categorical: set[str]) -> ColumnKind:
    dtype = series.dtype
    if name in categorical:
        return "categorical"
    if pd.api.types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return "categorical"
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
        values = series.dropna().to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            raise DiffsightError(
                f"numeric column {name!r} holds infinite values: replace them or leave the cells empty"
            )
        return "numeric"
    if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        values = series.dropna()
        if all(isinstance(v, str) for v in values):
            _refuse_numbers_or_dates_as_text(values, name)
            return "categorical"
        kinds = sorted({type(v).__name__ for v in values if not isinstance(v, str)})
        raise DiffsightError(
            f"column {name!r} has an unknown column type: it holds {', '.join(kinds)} values besides text; "
            "make it all numbers or all text, or drop it"
        )
    raise DiffsightError(
        f"column {name!r} has an unknown column type ({dtype}): only numeric and categorical (text, bool, "
        "category) columns can be modelled; convert it (e.g. a date to a number of days) or drop it"
    )


def _refuse_numbers_or_dates_as_text(values: pd.Series, name: str) -> None:
    """A text column that is mostly numbers (with a few stray words) or all ISO dates is not a category."""
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().mean() >= 0.8:
        stray = values[numbers.isna()].iloc[0]
        raise DiffsightError(
            f"column {name!r} has an unknown column type: it is mostly numbers but holds text such as {stray!r}; "
            "empty those cells (or write NA) if they are missing values, or pass it as categorical"
        )
    dates = pd.to_datetime(values, errors="coerce", format="ISO8601")
    if dates.notna().all():
        raise DiffsightError(
            f"column {name!r} has an unknown column type: it holds dates; convert them to numbers (e.g. days since "
            "the first date) or drop the column"
        )


def infer_columns(frame: pd.DataFrame, categorical: Iterable[str] = ()) -> list[ColumnSpec]:
    """Decide the kind of every column of ``frame`` (after :func:`check_table`).

    Args:
        frame: the table.
        categorical: names of numeric columns to treat as categories (codes such as 0/1/2).

    Raises:
        DiffsightError: a column of an unknown type, a name in ``categorical`` that is not a column, or a text
            column with more than :data:`MAX_LEVELS` distinct values.
    """
    frame = check_table(frame)
    forced = {str(c) for c in categorical}
    names = [str(c) for c in frame.columns]
    unknown = sorted(forced - set(names))
    if unknown:
        raise DiffsightError(f"categorical column(s) {unknown} are not in the table; its columns are {names}")
    specs = []
    for name, col in zip(names, frame.columns, strict=True):
        series = frame[col]
        kind = _kind_of(series, name, forced)
        if kind == "categorical":
            levels = series.dropna().nunique()
            if levels > MAX_LEVELS:
                raise DiffsightError(
                    f"column {name!r} has {levels} distinct values: it looks like an identifier or free text, "
                    f"not a category (at most {MAX_LEVELS} levels); drop it, or if it is a number fix its cells"
                )
        specs.append(ColumnSpec(name=name, kind=kind, dtype=str(series.dtype)))
    return specs
