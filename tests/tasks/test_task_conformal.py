"""Split-conformal per-pixel intervals reach the stated coverage on held-out pairs, across repeated splits."""

from __future__ import annotations

import pytest
import torch

from diffsight.errors import DiffsightError, ShapeError
from diffsight.oracles import GaussianOracle
from diffsight.tasks.conformal import calibrate_intervals, coverage_report
from diffsight.tasks.operators import IdentityOperator
from diffsight.tasks.posterior import reconstruct

pytestmark = pytest.mark.usefixtures("one_thread")


def _repeated_split_coverage(mean: torch.Tensor, std: torch.Tensor, truth: torch.Tensor, alpha: float) -> list[float]:
    n = mean.shape[0]
    out = []
    for split in range(200):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(split))
        cal, test = perm[: n // 2], perm[n // 2 :]
        calibration = calibrate_intervals(mean[cal], std[cal], truth[cal], alpha=alpha)
        out.append(coverage_report(calibration, mean[test], std[test], truth[test]).empirical)
    return out


def test_intervals_from_posterior_samples_reach_the_stated_coverage() -> None:
    """K = 4 posterior samples of a denoising problem give a noisy std: raw mean +- 1.645 std intervals miss the
    90% target (negative control); calibrated ones hold it on average over 200 random splits."""
    g = torch.Generator().manual_seed(0)
    root = torch.randn(9, 9, generator=g, dtype=torch.float64) / 3
    prior = GaussianOracle(torch.zeros(1, 3, 3), root @ root.T + 0.05 * torch.eye(9, dtype=torch.float64))
    truth = prior.sample(160, generator=g, dtype=torch.float64)
    op = IdentityOperator((1, 3, 3), 0.4)
    rec = reconstruct(prior, op, op.measure(truth, generator=g), method="denoise", samples=4, generator=g, steps=60)
    covered = _repeated_split_coverage(rec.mean, rec.std, truth, alpha=0.1)
    average = sum(covered) / len(covered)
    assert 0.895 <= average <= 0.93, average
    raw = ((truth - rec.mean).abs() <= 1.645 * rec.std).double().mean().item()
    assert raw < 0.85, raw


def test_heavy_tailed_errors_are_calibrated_too() -> None:
    g = torch.Generator().manual_seed(1)
    mean = torch.zeros(120, 1, 6, 6, dtype=torch.float64)
    std = torch.rand(mean.shape, generator=g, dtype=torch.float64) + 0.1
    z = torch.randn((4, *mean.shape), generator=g, dtype=torch.float64)
    t = z[0] / (z[1:].square().sum(0) / 3).sqrt()  # Student t with 3 degrees of freedom
    truth = mean + 0.5 * std * t
    for alpha in (0.05, 0.2):
        covered = _repeated_split_coverage(mean, std, truth, alpha)
        assert 1 - alpha - 0.005 <= sum(covered) / len(covered) <= 1 - alpha + 0.03


def test_calibration_refuses_what_it_cannot_certify() -> None:
    x = torch.zeros(5, 1, 2, 2)
    with pytest.raises(DiffsightError, match="cannot certify"):
        calibrate_intervals(x, x + 1, x, alpha=0.1)
    with pytest.raises(DiffsightError, match="alpha"):
        calibrate_intervals(x, x + 1, x, alpha=1.5)
    with pytest.raises(ShapeError, match="share one shape"):
        calibrate_intervals(x, torch.ones(5, 1, 3, 3), x)
