"""Multivariate time series for imputation: a (T, K) array with NaN for missing values, read and checked.

A :class:`SeriesData` is what every part of :mod:`diffsight.tasks.series` takes: ``values`` (T, K) float64 with
NaN where a value is missing, the column names, and (optionally) the time stamps of the rows. It is built from a
CSV file, a pandas DataFrame or an array, and the checks here refuse input that cannot be imputed with a message
that says what to fix (non-numeric columns, an empty column, too few rows for one window).

The demo series ship with statsmodels (no download): ``co2`` (Mauna Loa CO2, weekly readings averaged into 526
monthly means, 1958-2001), ``sunspots`` (yearly sunspot numbers, 309 years) and ``macrodata`` (12 US
macroeconomic quarterly series, 203 quarters, 1959-2009).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diffsight.errors import DiffsightError, unknown_name

__all__ = [
    "BUILTIN_SERIES",
    "SeriesData",
    "builtin_series",
    "guess_period",
    "read_series_csv",
    "series_from_array",
    "series_from_frame",
]

BUILTIN_SERIES: dict[str, int] = {"co2": 12, "sunspots": 11, "macrodata": 4}
"""The bundled demo series and their natural period (months per year, the ~11-year solar cycle, quarters)."""


@dataclass(frozen=True, eq=False)
class SeriesData:
    """A multivariate series: ``values`` (T, K) float64 with NaN = missing; ``columns`` names the K columns;
    ``time`` holds the time stamps of the T rows (or None) and ``time_name`` their column name."""

    values: np.ndarray
    columns: tuple[str, ...]
    time: Any = None
    time_name: str | None = None

    @property
    def observed(self) -> np.ndarray:
        """(T, K) bool, True where a value is present."""
        return ~np.isnan(self.values)

    @property
    def length(self) -> int:
        return int(self.values.shape[0])

    @property
    def num_features(self) -> int:
        return int(self.values.shape[1])


def series_from_array(
    values: Any, columns: Sequence[str] | None = None, time: Any = None, time_name: str | None = None
) -> SeriesData:
    """Check and wrap an array (T,) or (T, K) of floats (NaN = missing)."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DiffsightError(f"series values must be numbers (NaN for missing ones): {err}") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DiffsightError(f"a series must be shaped (time, features) with at least one of each, got {arr.shape}")
    if np.isinf(arr).any():
        raise DiffsightError("the series holds infinite values; replace them with numbers or leave the cells empty")
    names = tuple(str(c) for c in columns) if columns is not None else tuple(f"x{i}" for i in range(arr.shape[1]))
    if len(names) != arr.shape[1]:
        raise DiffsightError(f"{len(names)} column names for {arr.shape[1]} columns")
    empty = [n for n, ok in zip(names, (~np.isnan(arr)).any(0), strict=True) if not ok]
    if empty:
        raise DiffsightError(f"column(s) {', '.join(empty)} hold no values at all; drop them")
    return SeriesData(arr, names, time, time_name)


def series_from_frame(frame: Any, time_column: str | None = None) -> SeriesData:
    """A :class:`SeriesData` from a pandas DataFrame: every column but ``time_column`` must be numeric."""
    import pandas as pd

    time = None
    if time_column is not None:
        if time_column not in frame.columns:
            names = ", ".join(map(str, frame.columns))
            raise DiffsightError(f"time column {time_column!r} is not in the table; its columns are: {names}")
        time = frame[time_column].to_numpy()
        frame = frame.drop(columns=[time_column])
    bad = [str(c) for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        raise DiffsightError(
            f"column(s) {', '.join(bad)} are not numeric; a series needs numbers (empty cells for missing values). "
            "Name a date column with --time-column, or drop text columns"
        )
    if frame.shape[1] == 0:
        raise DiffsightError("the table has no numeric column to impute")
    return series_from_array(frame.to_numpy(dtype=np.float64), list(map(str, frame.columns)), time, time_column)


def read_series_csv(path: str | Path, time_column: str | None = None) -> SeriesData:
    """Read a CSV with one row per time step and one column per variable (empty cells = missing)."""
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise DiffsightError(f"no such file: {path}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DiffsightError(f"{path} is not a readable CSV: {err}") from None
    return series_from_frame(frame, time_column)


def builtin_series(name: str) -> SeriesData:
    """One of the series bundled with statsmodels (``co2``, ``sunspots``, ``macrodata``); nothing is downloaded."""
    if name not in BUILTIN_SERIES:
        raise unknown_name("series", name, list(BUILTIN_SERIES))
    from statsmodels import datasets

    if name == "co2":
        weekly = datasets.co2.load_pandas().data
        monthly = weekly.resample("MS").mean()  # 5 months have no reading: they stay missing
        return series_from_array(monthly["co2"].to_numpy(), ["co2"], monthly.index.to_numpy(), "month")
    if name == "sunspots":
        frame = datasets.sunspots.load_pandas().data
        return series_from_array(frame["SUNACTIVITY"].to_numpy(), ["sunactivity"], frame["YEAR"].to_numpy(), "year")
    frame = datasets.macrodata.load_pandas().data
    time = (frame["year"].astype(int).astype(str) + "Q" + frame["quarter"].astype(int).astype(str)).to_numpy()
    data = frame.drop(columns=["year", "quarter"])
    return series_from_array(data.to_numpy(dtype=np.float64), list(data.columns), time, "quarter")


def guess_period(data: SeriesData, max_period: int = 366) -> int | None:
    """A seasonal period guessed from the autocorrelation of the first differences of the first column: the
    highest local maximum at lags 2..min(T/3, max_period) if it exceeds 0.3, else None."""
    col = data.values[:, 0]
    t = np.arange(col.size)
    seen = ~np.isnan(col)
    diff = np.diff(np.interp(t, t[seen], col[seen]))
    diff = diff - diff.mean()
    denom = float((diff * diff).sum())
    top = min(diff.size // 3, max_period)
    if denom == 0 or top < 3:
        return None
    acf = np.array([float((diff[:-lag] * diff[lag:]).sum()) / denom for lag in range(1, top + 2)])  # lags 1..top+1
    best, best_lag = 0.3, None
    for lag in range(2, top + 1):
        a = acf[lag - 1]
        if a > acf[lag - 2] and a >= acf[lag] and a > best:
            best, best_lag = a, lag
    return best_lag
