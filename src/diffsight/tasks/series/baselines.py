"""Classical gap fillers to compare against: straight-line interpolation and seasonal-naive.

Both give one value per gap (a point forecast), so their CRPS equals their absolute error.

- ``linear_interpolation``: per column, the straight line between the nearest observed values before and after;
  the nearest observed value beyond the first or last one.
- ``seasonal_naive``: per column, the observed value at the nearest time with the same seasonal phase, i.e. the
  closest t +- j * period (j = 1, 2, ...) that is observed, the earlier one on a tie; straight-line interpolation
  where no value with that phase is observed at all.
"""

from __future__ import annotations

import numpy as np

__all__ = ["linear_interpolation", "seasonal_naive"]


def linear_interpolation(values: np.ndarray) -> np.ndarray:
    """(T, K) with NaN -> (T, K) filled by straight lines between observed values (flat at the ends)."""
    out = np.array(values, dtype=np.float64)
    t = np.arange(out.shape[0])
    for k in range(out.shape[1]):
        seen = ~np.isnan(out[:, k])
        if seen.any():
            out[:, k] = np.interp(t, t[seen], out[seen, k])
    return out


def seasonal_naive(values: np.ndarray, period: int) -> np.ndarray:
    """(T, K) with NaN -> (T, K) filled with the nearest observed value of the same seasonal phase."""
    out = np.array(values, dtype=np.float64)
    fallback = linear_interpolation(values)
    length = out.shape[0]
    for k in range(out.shape[1]):
        col = values[:, k]
        for t in np.flatnonzero(np.isnan(col)):
            filled = False
            for j in range(1, length // period + 2):
                for s in (t - j * period, t + j * period):
                    if 0 <= s < length and not np.isnan(col[s]):
                        out[t, k] = col[s]
                        filled = True
                        break
                if filled:
                    break
            if not filled:
                out[t, k] = fallback[t, k]
    return out
