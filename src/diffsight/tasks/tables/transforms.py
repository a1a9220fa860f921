"""Encode a table as real vectors for Gaussian diffusion, and decode samples back into cells.

Formulation (the one the model is trained on; TabDDPM, Kotelnikov et al. 2023, sec. 3, uses the same numeric
transform but multinomial diffusion for categories):

- **Numeric column** -> one coordinate ``z = Phi^{-1}(F_n(x))``: ``F_n`` is the empirical CDF of the observed
  values, interpolated linearly between ``n_q = min(1000, n)`` quantiles, and ``Phi^{-1}`` the standard normal
  quantile function, so every numeric coordinate is ~N(0, 1) whatever the column's marginal. Ties (integer or
  binary columns) map to the middle of their CDF step (the average of the left and right interpolation).
  ``F_n`` is clipped to ``[1e-7, 1 - 1e-7]``, so ``|z| <= 5.2``. The inverse is ``x = F_n^{-1}(Phi(z))``, which
  is monotone: a quantile of ``z`` maps to the same quantile of ``x``.
- **Categorical column** with levels ``l_1..l_C`` -> ``C`` coordinates, ``+1`` at the row's level and ``-1``
  elsewhere (a one-hot code scaled to [-1, 1], diffused like any other coordinate: the continuous relaxation of
  Chen et al. 2023, "Analog bits"). A sample decodes to the level of its largest coordinate (argmax).

A missing cell encodes as zeros and a ``False`` in the column-level observed mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from diffsight.errors import DiffsightError
from diffsight.tasks.tables.schema import ColumnSpec

__all__ = ["EncodedTable", "QuantileNormal", "TableEncoder"]

_CLIP = 1e-7
MAX_QUANTILES = 1000


@dataclass(frozen=True)
class QuantileNormal:
    """The map ``x -> Phi^{-1}(F_n(x))`` of one numeric column, stored as its quantiles."""

    quantiles: np.ndarray  # (n_q,) non-decreasing

    @classmethod
    def fit(cls, values: np.ndarray) -> QuantileNormal:
        values = np.asarray(values, dtype=np.float64)
        n_q = min(MAX_QUANTILES, values.size)
        return cls(np.quantile(values, np.linspace(0.0, 1.0, n_q)))

    @property
    def constant(self) -> bool:
        return bool(self.quantiles[0] == self.quantiles[-1])

    def _references(self) -> np.ndarray:
        return np.linspace(0.0, 1.0, self.quantiles.size)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.constant:
            return np.zeros_like(x)
        lo, hi = self._step(x)
        return ndtri(np.clip(0.5 * (lo + hi), _CLIP, 1 - _CLIP))  # middle of a tie's CDF step

    def forward_range(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(z_lo, z_hi)``: every ``z`` in between decodes to ``x`` (a tie's whole CDF step; one point otherwise)."""
        x = np.asarray(x, dtype=np.float64)
        if self.constant:
            return np.full_like(x, -np.inf), np.full_like(x, np.inf)
        lo, hi = self._step(x)
        return ndtri(np.clip(lo, _CLIP, 1 - _CLIP)), ndtri(np.clip(hi, _CLIP, 1 - _CLIP))

    def _step(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ends of ``x``'s step of the empirical CDF (equal where ``x`` is not tied), in [0, 1]."""
        q, r = self.quantiles, self._references()
        a, b = np.interp(x, q, r), -np.interp(-x, -q[::-1], -r[::-1])
        return np.minimum(a, b), np.maximum(a, b)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=np.float64)
        if self.constant:
            return np.full_like(z, self.quantiles[0])
        return np.interp(ndtr(z), self._references(), self.quantiles)


@dataclass(frozen=True)
class EncodedTable:
    """A table as model input: ``values`` (N, D) with zeros where missing, ``observed`` (N, n_columns)."""

    values: np.ndarray
    observed: np.ndarray


class TableEncoder:
    """Column-wise encoder: numeric through :class:`QuantileNormal`, categorical through a +-1 one-hot code.

    Attributes:
        columns: the :class:`ColumnSpec` of every column, in table order.
        slices: the coordinates of each column in an encoded row.
        dim: D, the length of an encoded row.
        coord_column: (D,) the column index of each coordinate.
    """

    def __init__(
        self, columns: list[ColumnSpec], quantiles: dict[str, QuantileNormal], levels: dict[str, list[Any]]
    ) -> None:
        self.columns = list(columns)
        self.quantiles = dict(quantiles)
        self.levels = {k: list(v) for k, v in levels.items()}
        self.slices: list[slice] = []
        start = 0
        for spec in self.columns:
            width = 1 if spec.kind == "numeric" else len(self.levels[spec.name])
            self.slices.append(slice(start, start + width))
            start += width
        self.dim = start
        self.coord_column = np.concatenate(
            [np.full(s.stop - s.start, j, dtype=np.int64) for j, s in enumerate(self.slices)]
        )

    # --- fitting and (de)serialisation ----------------------------------------------------------------------

    @classmethod
    def fit(cls, frame: pd.DataFrame, columns: list[ColumnSpec]) -> TableEncoder:
        quantiles: dict[str, QuantileNormal] = {}
        levels: dict[str, list[Any]] = {}
        for spec, col in zip(columns, frame.columns, strict=True):
            observed = frame[col].dropna()
            if spec.kind == "numeric":
                quantiles[spec.name] = QuantileNormal.fit(observed.to_numpy(dtype=np.float64))
            else:
                levels[spec.name] = sorted({_plain(v) for v in observed}, key=lambda v: (type(v).__name__, v))
        return cls(columns, quantiles, levels)

    def to_json(self) -> dict[str, Any]:
        cols = []
        for spec in self.columns:
            entry: dict[str, Any] = {"name": spec.name, "kind": spec.kind, "dtype": spec.dtype}
            if spec.kind == "numeric":
                entry["quantiles"] = self.quantiles[spec.name].quantiles.tolist()
            else:
                entry["levels"] = self.levels[spec.name]
            cols.append(entry)
        return {"columns": cols}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TableEncoder:
        try:
            columns, quantiles, levels = [], {}, {}
            for entry in data["columns"]:
                spec = ColumnSpec(name=str(entry["name"]), kind=entry["kind"], dtype=str(entry["dtype"]))
                if spec.kind == "numeric":
                    q = np.asarray(entry["quantiles"], dtype=np.float64)
                    if q.ndim != 1 or q.size == 0 or not np.all(np.diff(q) >= 0):
                        raise DiffsightError(f"column {spec.name!r}: quantiles must be a non-empty sorted list")
                    quantiles[spec.name] = QuantileNormal(q)
                elif spec.kind == "categorical":
                    levels[spec.name] = list(entry["levels"])
                    if not levels[spec.name]:
                        raise DiffsightError(f"column {spec.name!r}: a categorical column needs levels")
                else:
                    raise DiffsightError(f"column {spec.name!r}: unknown kind {spec.kind!r}")
                columns.append(spec)
        except (KeyError, TypeError, ValueError) as err:
            if isinstance(err, DiffsightError):
                raise
            raise DiffsightError(f"the table transform JSON is malformed ({err!r}); refit the model") from None
        return cls(columns, quantiles, levels)

    # --- encoding ----------------------------------------------------------------------------------------------

    def check_frame(self, frame: pd.DataFrame) -> None:
        """The frame has exactly the fitted columns, in order."""
        names = [str(c) for c in frame.columns]
        expected = [c.name for c in self.columns]
        if names != expected:
            raise DiffsightError(f"the table's columns {names} differ from the fitted model's {expected}")

    def encode(self, frame: pd.DataFrame) -> EncodedTable:
        """Encode ``frame`` (N rows); a categorical value the encoder never saw is refused."""
        self.check_frame(frame)
        n = len(frame)
        values = np.zeros((n, self.dim), dtype=np.float64)
        observed = np.zeros((n, len(self.columns)), dtype=bool)
        for j, (spec, col) in enumerate(zip(self.columns, frame.columns, strict=True)):
            series = frame[col]
            present = series.notna().to_numpy()
            observed[:, j] = present
            sl = self.slices[j]
            if spec.kind == "numeric":
                x = pd.to_numeric(series[present], errors="coerce").to_numpy(dtype=np.float64)
                if np.isnan(x).any():
                    raise DiffsightError(f"numeric column {spec.name!r} holds cells that are not numbers")
                values[present, sl.start] = self.quantiles[spec.name].forward(x)
            else:
                index = {level: k for k, level in enumerate(self.levels[spec.name])}
                codes = []
                for v in series[present]:
                    key = _plain(v)
                    if key not in index:
                        raise DiffsightError(
                            f"column {spec.name!r} holds the value {key!r}, which the model never saw; "
                            f"known values: {self.levels[spec.name][:10]}"
                        )
                    codes.append(index[key])
                block = -np.ones((int(present.sum()), sl.stop - sl.start))
                block[np.arange(len(codes)), np.asarray(codes, dtype=np.int64)] = 1.0
                values[present, sl] = block
        return EncodedTable(values=values, observed=observed)

    def encode_numeric(self, j: int, x: np.ndarray) -> np.ndarray:
        """Column ``j``'s coordinate ``z`` of values ``x`` (any shape): the forward quantile-normal map."""
        return self.quantiles[self.columns[j].name].forward(x)

    def numeric_range(self, j: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Column ``j``'s ``(z_lo, z_hi)``: every coordinate between decodes to ``x`` (``forward_range``)."""
        return self.quantiles[self.columns[j].name].forward_range(x)

    def decode_numeric(self, j: int, z: np.ndarray) -> np.ndarray:
        """Column ``j``'s values from its coordinate ``z`` (any shape)."""
        return self.quantiles[self.columns[j].name].inverse(z)

    def decode_codes(self, j: int, block: np.ndarray) -> np.ndarray:
        """Level indices (...,) of categorical column ``j`` from its coordinates (..., C): the argmax."""
        return np.argmax(block, axis=-1)

    def decode(self, z: np.ndarray) -> pd.DataFrame:
        """Rows (N, D) -> a DataFrame of N decoded rows (synthesis)."""
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise DiffsightError(f"expected encoded rows of shape (N, {self.dim}), got {z.shape}")
        data: dict[str, Any] = {}
        for j, spec in enumerate(self.columns):
            sl = self.slices[j]
            if spec.kind == "numeric":
                data[spec.name] = self.decode_numeric(j, z[:, sl.start])
            else:
                levels = self.levels[spec.name]
                data[spec.name] = [levels[k] for k in self.decode_codes(j, z[:, sl])]
        return pd.DataFrame(data)


def _plain(value: Any) -> Any:
    """A JSON-able Python scalar for a cell value (numpy scalars unwrapped; integral floats kept as floats)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        raise DiffsightError(f"a categorical cell holds {value}; leave it empty instead")
    if not isinstance(value, str | int | float | bool):
        return str(value)
    return value
