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
coverage (and makes them asymmetric where the column is skewed). A tied value (an integer or binary column)
decodes from a whole range ``[y_lo, y_hi]`` of normal coordinates, so its decoded interval contains it as soon
as ``I_lam`` meets that range: its score is ``max(0, y_lo - mu, mu - y_hi) / s``, the smallest scale whose
decoded interval holds the value (scoring the distance to the middle of the range instead makes the intervals
of such columns conservative). ``center`` replaces ``mu`` by another point
estimate (the stacked one of :mod:`~diffsight.tasks.tables.stacking`, mapped to the normal coordinates): the
scores and the intervals must then use the same centre.
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


def conformity_scores(
    samples: np.ndarray,
    truth: np.ndarray,
    center: np.ndarray | None = None,
    truth_upper: np.ndarray | None = None,
) -> np.ndarray:
    """Scores (n,) of n calibration cells from their samples (n, K) and true values (n,).

    ``center`` (n,): the intervals' centres, if not the samples' means. ``truth_upper`` (n,): the upper end of
    the range of coordinates that decode to the true value, ``truth`` being its lower end (ties).
    """
    samples, truth = np.asarray(samples, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    if samples.ndim != 2 or samples.shape[1] < 2 or truth.shape != samples.shape[:1]:
        raise DiffsightError(f"need samples (n, K >= 2) and truth (n,), got {samples.shape} and {truth.shape}")
    mu, s = _summaries(samples)
    if center is not None:
        mu = _center(center, mu)
    if truth_upper is None:
        return np.abs(truth - mu) / s
    upper = np.asarray(truth_upper, dtype=np.float64)
    if upper.shape != truth.shape or (upper < truth).any():
        raise DiffsightError("truth_upper must have truth's shape and be >= truth")
    return np.maximum(0.0, np.maximum(truth - mu, mu - upper)) / s


def conformal_scale(scores: np.ndarray, coverage: float) -> float:
    """``lam_hat``: the ceil((n + 1) coverage)-th smallest score; ``inf`` when n is too small for ``coverage``."""
    if not 0.0 < coverage < 1.0:
        raise DiffsightError(f"coverage must lie strictly between 0 and 1, got {coverage}")
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    rank = math.ceil((scores.size + 1) * coverage)
    if rank > scores.size:
        return math.inf
    return float(scores[rank - 1])


def interval_from_samples(
    samples: np.ndarray, lam: float, center: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) of ``I_lam`` for cells with samples (..., K), centred on ``center`` (...) if given."""
    mu, s = _summaries(np.asarray(samples, dtype=np.float64))
    if center is not None:
        mu = _center(center, mu)
    return mu - lam * s, mu + lam * s


def _center(center: np.ndarray, mu: np.ndarray) -> np.ndarray:
    center = np.asarray(center, dtype=np.float64)
    if center.shape != mu.shape:
        raise DiffsightError(f"need one centre per cell {mu.shape}, got {center.shape}")
    return center
