"""Split-conformal per-pixel intervals from posterior samples, and an empirical coverage report.

Given a reconstruction's per-pixel mean ``mu`` and spread ``sd`` (from K posterior samples), the interval
family is ``T_lambda = [mu - lambda sd, mu + lambda sd]``. On n held-out calibration pairs (image, truth) the
loss of image i is the fraction of its pixels outside the interval, ``L_i(lambda)``, non-increasing in
lambda and bounded by 1. Conformal risk control (Angelopoulos, Bates, Fisch, Lei & Schuster, ICLR 2024,
Theorem 1) picks

    lambda_hat = inf { lambda : n / (n + 1) * mean_i L_i(lambda) + 1 / (n + 1) <= alpha }

and guarantees, for a new exchangeable pair, ``E[L_{n+1}(lambda_hat)] <= alpha``: the expected fraction of
pixels left uncovered is at most alpha, i.e. the intervals have at least ``1 - alpha`` per-pixel coverage on
average. (The pixel-wise analogue of im2im-uq's risk-controlling intervals, Angelopoulos et al. 2022, in
expectation rather than with probability 1 - delta.) The coverage is marginal over images and pixels, not
per pixel location. ``sd`` is floored at ``min_std`` so that pixels the samples agree on still get a width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diffsight.errors import DiffsightError, ShapeError

__all__ = ["ConformalCalibration", "CoverageReport", "calibrate_intervals", "coverage_report"]


@dataclass(frozen=True)
class ConformalCalibration:
    """The calibrated multiplier: intervals are ``mean +- scale * max(std, min_std)``.

    Attributes:
        alpha: the stated miscoverage; ``1 - alpha`` is the stated per-pixel coverage.
        scale: lambda_hat.
        min_std: floor of the spread.
        n_calibration: calibration images used.
    """

    alpha: float
    scale: float
    min_std: float
    n_calibration: int

    @property
    def coverage(self) -> float:
        return 1.0 - self.alpha

    def intervals(self, mean: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(lower, upper), each shaped like ``mean``."""
        if mean.shape != std.shape:
            raise ShapeError(f"mean {tuple(mean.shape)} and std {tuple(std.shape)} must have the same shape")
        half = self.scale * std.clamp_min(self.min_std)
        return mean - half, mean + half


def _scores(mean: torch.Tensor, std: torch.Tensor, truth: torch.Tensor, min_std: float) -> torch.Tensor:
    if not (mean.shape == std.shape == truth.shape) or mean.ndim < 2:
        raise ShapeError(
            "mean, std and truth must share one shape (N, ...) with N calibration images; got "
            f"{tuple(mean.shape)}, {tuple(std.shape)}, {tuple(truth.shape)}"
        )
    return ((truth - mean).abs() / std.clamp_min(min_std)).reshape(mean.shape[0], -1)  # (N, pixels)


def calibrate_intervals(
    mean: torch.Tensor, std: torch.Tensor, truth: torch.Tensor, *, alpha: float = 0.1, min_std: float = 1e-3
) -> ConformalCalibration:
    """Conformal risk control of the per-pixel miscoverage on calibration pairs (N, *event) each."""
    if not 0 < alpha < 1:
        raise DiffsightError(f"alpha must lie in (0, 1) (0.1 = 90% intervals), got {alpha}")
    scores = _scores(mean, std, truth, min_std).double()
    n, p = scores.shape
    if (n + 1) * alpha <= 1:
        raise DiffsightError(f"{n} calibration images cannot certify alpha={alpha}: need n >= {int(1 / alpha)}")
    # Mean loss at lambda: fraction of all calibration pixels with score > lambda. It only changes at the
    # scores, so lambda_hat is the smallest score s with n/(n+1) * frac(scores > s) + 1/(n+1) <= alpha.
    flat = scores.reshape(-1).sort().values  # ascending
    above = (n * p - torch.arange(1, n * p + 1, dtype=torch.float64)) / (n * p)  # frac strictly above flat[j]
    ok = n / (n + 1) * above + 1 / (n + 1) <= alpha
    # ties: frac above flat[j] assumes no later equal values; take the last index of a run of equal scores
    j = int(torch.nonzero(ok)[0]) if bool(ok.any()) else n * p - 1
    return ConformalCalibration(float(alpha), float(flat[j]), float(min_std), int(n))


@dataclass(frozen=True)
class CoverageReport:
    """Empirical per-pixel coverage of calibrated intervals on held-out test pairs.

    Attributes:
        stated: the coverage the calibration states (1 - alpha).
        empirical: fraction of test pixels inside their interval.
        per_image: (N,) coverage of each test image.
        mean_width: average interval width (data units).
    """

    stated: float
    empirical: float
    per_image: torch.Tensor
    mean_width: float

    def summary(self) -> str:
        return (
            f"stated {self.stated:.0%} per-pixel coverage, observed {self.empirical:.1%} on "
            f"{self.per_image.numel()} test images (mean width {self.mean_width:.3f})"
        )


def coverage_report(
    calibration: ConformalCalibration, mean: torch.Tensor, std: torch.Tensor, truth: torch.Tensor
) -> CoverageReport:
    """How often the calibrated intervals hold the truth on test pairs (N, *event) each."""
    _scores(mean, std, truth, calibration.min_std)  # shape check
    lo, hi = calibration.intervals(mean, std)
    inside = ((truth >= lo) & (truth <= hi)).reshape(mean.shape[0], -1).double()  # (N, pixels)
    return CoverageReport(calibration.coverage, float(inside.mean()), inside.mean(1), float((hi - lo).mean()))
