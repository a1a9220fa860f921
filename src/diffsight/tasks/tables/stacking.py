"""A linear fill in the table's own units, and its stacking with the mean of the diffusion draws.

**Linear fill.** Every numeric column is standardised with the mean and standard deviation of its training
cells, ``u = (x - m) / sd`` (not the quantile transform the diffusion runs on: a sum or a ratio of columns stays
linear in ``u`` but is bent by ``Phi^-1(F_n(.))``); categorical columns keep their +-1 codes. A Gaussian
``N(mu, S)`` is fitted to these coordinates by EM for values missing at random (:class:`GaussianPrior`; Little
and Rubin 2002, sec. 11.2), and a hidden numeric cell's linear fill is its conditional mean given the row's
known cells, ``m + sd * E[u_m | u_o]``, clipped to the range of the column's training values. This is the
model that chained linear regressions (scikit-learn's ``IterativeImputer``) approximate.

**Stacking** (Wolpert 1992; Breiman 1996, "Stacked regressions", with non-negative weights summing to one).
The point estimate of a numeric cell is ``w * d + (1 - w) * l``: ``d`` the mean of the cell's diffusion draws,
``l`` its linear fill. ``w`` minimises the squared error, each column in units of its standard deviation, over
the cells withheld for calibration (filled from the rest of their row by both members, neither trained on
them): with ``a = (d - l) / sd`` and ``b = (y - l) / sd``, ``w = clip(<a, b> / <a, a>, 0, 1)``. One weight for
the whole table: two members and a few hundred cells leave little room to overfit, and the weight does not
enter the conformal scores, so the intervals keep their guarantee.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from diffsight.errors import DiffsightError
from diffsight.tasks.tables.gaussian import GaussianPrior, gaussian_conditional
from diffsight.tasks.tables.transforms import EncodedTable, TableEncoder

__all__ = ["LinearFill", "stack_weight"]


@dataclass(frozen=True)
class LinearFill:
    """The Gaussian over standardised coordinates and each numeric column's scaling and range.

    ``center``, ``scale``, ``low``, ``high``: (D,) per coordinate (0, 1, -inf, inf on categorical ones).
    """

    prior: GaussianPrior
    center: np.ndarray
    scale: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def fit(
        cls, frame: pd.DataFrame, encoder: TableEncoder, encoded: EncodedTable, train: np.ndarray, *, ridge: float
    ) -> LinearFill:
        """Fit on the cells ``train`` (N, n_columns) of ``frame`` (encoded as ``encoded``)."""
        dim = encoder.dim
        center, scale = np.zeros(dim), np.ones(dim)
        low, high = np.full(dim, -np.inf), np.full(dim, np.inf)
        for j, spec in enumerate(encoder.columns):
            if spec.kind != "numeric":
                continue
            x = _numeric(frame, j)[train[:, j]]
            c = encoder.slices[j].start
            center[c], low[c], high[c] = x.mean(), x.min(), x.max()
            sd = x.std(ddof=1) if x.size > 1 else 0.0
            scale[c] = sd if sd > 0 else 1.0
        fill = cls(GaussianPrior(torch.zeros(dim), torch.eye(dim)), center, scale, low, high)
        values = fill.coordinates(frame, encoder, encoded)
        coord_train = train[:, encoder.coord_column]
        return cls(GaussianPrior.fit(values, coord_train, ridge=ridge), center, scale, low, high)

    def coordinates(self, frame: pd.DataFrame, encoder: TableEncoder, encoded: EncodedTable) -> np.ndarray:
        """(N, D) rows in the linear coordinates (0 where a cell is missing)."""
        values = encoded.values.copy()
        for j, spec in enumerate(encoder.columns):
            if spec.kind == "numeric":
                c = encoder.slices[j].start
                u = (_numeric(frame, j) - self.center[c]) / self.scale[c]
                values[:, c] = np.where(encoded.observed[:, j], np.nan_to_num(u), 0.0)
        return values

    def fill(self, values: np.ndarray, given: np.ndarray) -> np.ndarray:
        """(N, D) the linear fill of every coordinate in the table's units (given ones: their value, unscaled).

        Args:
            values: (N, D) rows from :meth:`coordinates`.
            given: (N, D) which coordinates each row's fill may use.
        """
        if values.shape != given.shape or values.shape[1:] != self.center.shape:
            raise DiffsightError(f"the linear fill needs rows (N, {self.center.size}), got {values.shape}")
        mean, _ = gaussian_conditional(
            self.prior.mean, self.prior.cov, torch.as_tensor(values * given), torch.as_tensor(given)
        )  # float64
        return np.clip(mean.numpy() * self.scale + self.center, self.low, self.high)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        tensors = {f"linear.{k}": v for k, v in self.prior.to_tensors().items()}
        for name in ("center", "scale", "low", "high"):
            tensors[f"linear.{name}"] = torch.as_tensor(getattr(self, name), dtype=torch.float64)
        return tensors

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> LinearFill:
        prefix = "linear."
        own = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
        prior = GaussianPrior.from_tensors(own)
        try:
            parts = [tensors[f"{prefix}{name}"].double().numpy() for name in ("center", "scale", "low", "high")]
        except KeyError as err:
            raise DiffsightError(f"the weights lack the linear fill ({err}); refit the model") from None
        return cls(prior, *parts)


def stack_weight(draws_mean: np.ndarray, linear: np.ndarray, truth: np.ndarray, scale: np.ndarray) -> float:
    """``w`` in [0, 1] minimising ``sum(((w d + (1 - w) l - y) / sd)^2)`` over calibration cells (all (n,)).

    1.0 (the draws alone) when there are no cells or the two members agree on every cell.
    """
    d, lin, y, sd = (np.asarray(v, dtype=np.float64) for v in (draws_mean, linear, truth, scale))
    if not d.shape == lin.shape == y.shape == sd.shape or d.ndim != 1:
        raise DiffsightError(f"need four arrays of n cells, got {d.shape}, {lin.shape}, {y.shape}, {sd.shape}")
    a, b = (d - lin) / sd, (y - lin) / sd
    denom = float((a * a).sum())
    if d.size == 0 or denom <= 1e-12:
        return 1.0
    return float(np.clip((a * b).sum() / denom, 0.0, 1.0))


def _numeric(frame: pd.DataFrame, j: int) -> np.ndarray:
    return pd.to_numeric(frame.iloc[:, j], errors="coerce").to_numpy(dtype=np.float64)
