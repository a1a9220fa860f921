"""Split-conformal calibration of per-cell intervals built from posterior samples.

Each cell has K samples (in the model's normal coordinates) with mean ``mu`` and standard deviation ``s``
(Bessel-corrected, so that the spread does not depend much on K). They define a nested family of intervals,
one per scale ``lam >= 0``:

    I_lam = [mu - lam s,  mu + lam s]

(locally weighted split conformal, Lei et al. 2018, sec. 5.2). On calibration cells whose true value ``y`` is
known but was hidden from the model, the conformity score is the smallest scale that covers ``y``:

    score = |y - mu| / s.

With n scores, ``lam_hat`` = the ceil((n + 1) c)-th smallest score gives intervals that contain a new,
exchangeable cell's value with probability at least c (Vovk et al. 2005; Lei et al. 2018, Theorem 2.2).
Intervals in normal coordinates map to the table's units through the monotone inverse transform, which keeps
coverage (and makes them asymmetric where the column is skewed).
"""

from __future__ import annotations

import math

import numpy as np

from diffsight.errors import DiffsightError

__all__ = ["conformal_scale", "conformity_scores", "interval_from_samples"]

_EPS = 1e-6


def _summaries(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) over the last axis of ``samples`` (..., K)."""
    return samples.mean(axis=-1), np.maximum(samples.std(axis=-1, ddof=1), _EPS)


def conformity_scores(samples: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Scores (n,) of n calibration cells from their samples (n, K) and true values (n,)."""
    samples, truth = np.asarray(samples, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    if samples.ndim != 2 or samples.shape[1] < 2 or truth.shape != samples.shape[:1]:
        raise DiffsightError(f"need samples (n, K >= 2) and truth (n,), got {samples.shape} and {truth.shape}")
    mu, s = _summaries(samples)
    return np.abs(truth - mu) / s


def conformal_scale(scores: np.ndarray, coverage: float) -> float:
    """``lam_hat``: the ceil((n + 1) coverage)-th smallest score; ``inf`` when n is too small for ``coverage``."""
    if not 0.0 < coverage < 1.0:
        raise DiffsightError(f"coverage must lie strictly between 0 and 1, got {coverage}")
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    rank = math.ceil((scores.size + 1) * coverage)
    if rank > scores.size:
        return math.inf
    return float(scores[rank - 1])


def interval_from_samples(samples: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) of ``I_lam`` for cells with samples (..., K)."""
    mu, s = _summaries(np.asarray(samples, dtype=np.float64))
    return mu - lam * s, mu + lam * s
