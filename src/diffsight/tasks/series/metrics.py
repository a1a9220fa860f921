"""Scores of probabilistic imputations: CRPS from samples, the closed-form CRPS of a Gaussian, and MAE.

CRPS(F, y) = E|X - y| - 1/2 E|X - X'| with X, X' ~ F independent (Gneiting & Raftery 2007, eq. 21). For the
empirical distribution of samples x_1..x_m this is

    CRPS = 1/m sum_i |x_i - y| - 1/(2 m^2) sum_{i,j} |x_i - x_j|,

and with the samples sorted, sum_{i,j} |x_i - x_j| = 2 sum_i (2i - m - 1) x_(i) (i = 1..m), which costs
O(m log m). For a point forecast (m = 1) CRPS is the absolute error, so a deterministic baseline's CRPS is its MAE.
For a Gaussian N(mu, s^2), CRPS = s [w (2 Phi(w) - 1) + 2 phi(w) - 1/sqrt(pi)], w = (y - mu)/s
(Gneiting, Raftery, Westveld & Goldman 2005, eq. 5).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["crps_gaussian", "crps_samples", "mae"]


def crps_samples(samples: np.ndarray, y: np.ndarray, *, fair: bool = False) -> np.ndarray:
    """CRPS of the empirical distribution of ``samples`` (m, *shape) at observations ``y`` (*shape).

    ``fair=True`` divides the spread term by m (m - 1) instead of m^2: an unbiased estimate of the CRPS of the
    distribution the samples come from, whatever m (the "fair" CRPS of Ferro 2014), so scores with different m compare.
    """
    x = np.sort(np.asarray(samples, dtype=np.float64), axis=0)
    m = x.shape[0]
    spread_w = (2 * np.arange(1, m + 1) - m - 1).reshape((m,) + (1,) * (x.ndim - 1))
    term1 = np.abs(x - np.asarray(y, dtype=np.float64)[None]).mean(0)
    return term1 - (spread_w * x).sum(0) / (m * (m - 1) if fair and m > 1 else m**2)


def crps_gaussian(mu: np.ndarray, sigma: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Closed-form CRPS of N(mu, sigma^2) at ``y`` (broadcasting)."""
    from scipy.stats import norm

    w = (np.asarray(y) - mu) / sigma
    return sigma * (w * (2 * norm.cdf(w) - 1) + 2 * norm.pdf(w) - 1 / math.sqrt(math.pi))


def mae(prediction: np.ndarray, y: np.ndarray) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(np.asarray(prediction) - np.asarray(y))))
