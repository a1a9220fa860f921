"""Known answers for the image solvers: a linear-Gaussian inverse problem with the Gaussian oracle as prior.

The posterior of x ~ N(mu, S), y = A x + sigma_y z is N(mu + G (y - A mu), S - G A S), G = S A^T (A S A^T +
sigma_y^2 I)^-1. Exact denoising (start the reverse process at sigma_y) must reproduce it, mean and per-pixel
variance, under a chi-square test; starting at the wrong level (negative control) must fail the same test.
RePaint is not exact, but its resampling must bring it close, and without resampling it must be far.
"""

from __future__ import annotations

import pytest
import torch
from scipy import stats

from diffsight.errors import DiffsightError
from diffsight.oracles import GaussianOracle
from diffsight.tasks.denoise import denoise_posterior
from diffsight.tasks.operators import DownsampleOperator, IdentityOperator, MaskOperator
from diffsight.tasks.posterior import reconstruct
from diffsight.tasks.repaint import repaint_schedule

pytestmark = pytest.mark.usefixtures("one_thread")

D = 16


@pytest.fixture(scope="module")
def prior() -> GaussianOracle:
    g = torch.Generator().manual_seed(0)
    root = torch.randn(D, D, generator=g, dtype=torch.float64) / 4
    cov = root @ root.T + 0.05 * torch.eye(D, dtype=torch.float64)
    mean = 0.3 * torch.randn(D, generator=g, dtype=torch.float64)
    return GaussianOracle(mean.reshape(1, 4, 4), cov)


def _posterior(prior: GaussianOracle, a: torch.Tensor, y: torch.Tensor, sy: float) -> tuple[torch.Tensor, torch.Tensor]:
    s, mu = prior.cov, prior.mean
    gain = s @ a.T @ torch.linalg.inv(a @ s @ a.T + sy**2 * torch.eye(a.shape[0], dtype=torch.float64))
    return mu + gain @ (y - a @ mu), s - gain @ a @ s


def _chi2_pvalues(samples: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> tuple[float, float]:
    """p-values of (1) sum_j (m_j - mean_j)^2 / (var_j / n) ~ chi2_d and (2) per-pixel variances:
    (n - 1) s_j^2 / var_j ~ chi2_{n-1}, turned to z-scores and summed squared ~ chi2_d."""
    n, d = samples.shape
    chi_mean = float((((samples.mean(0) - mean) ** 2) / (var / n)).sum())
    q = (n - 1) * samples.var(0) / var
    z = torch.tensor(stats.norm.ppf(stats.chi2.cdf(q.numpy(), n - 1)))
    chi_var = float((z**2).sum())
    return float(stats.chi2.sf(chi_mean, d)), float(stats.chi2.sf(chi_var, d))


@pytest.mark.slow
def test_exact_denoising_matches_the_closed_form_posterior(prior: GaussianOracle) -> None:
    g = torch.Generator().manual_seed(1)
    sy, n = 0.5, 2000
    x0 = prior.sample(1, generator=g, dtype=torch.float64)
    y = x0 + sy * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    mean, cov = _posterior(prior, torch.eye(D, dtype=torch.float64), y.reshape(D), sy)
    var = cov.diag()
    op = IdentityOperator((1, 4, 4), sy)
    rec = reconstruct(prior, op, y, method="denoise", samples=n, generator=g, steps=1000)
    p_mean, p_var = _chi2_pvalues(rec.samples.reshape(n, D), mean, var)
    assert p_mean > 1e-3 and p_var > 1e-3, (p_mean, p_var)
    assert rec.nfe == 1000
    # negative control: the same solver started at the wrong noise level fails the same test
    wrong = denoise_posterior(prior, y.repeat(n, 1, 1, 1), 1.5 * sy, steps=1000, generator=g)
    assert min(_chi2_pvalues(wrong.reshape(n, D), mean, var)) < 1e-6
    # a deterministic sampler gives one point, not the posterior: its variance test fails
    point = denoise_posterior(prior, y.repeat(n, 1, 1, 1), sy, steps=50, sampler="euler")
    assert float(point.reshape(n, D).var(0).max()) < 1e-12


def test_repaint_resampling_approaches_the_exact_inpainting_posterior(prior: GaussianOracle) -> None:
    g = torch.Generator().manual_seed(2)
    mask = torch.ones(4, 4)
    mask[1:3, 1:3] = 0
    op = MaskOperator(mask, (1, 4, 4), 0.1)
    y = op.measure(prior.sample(1, generator=g, dtype=torch.float64), generator=g)
    keep = op.mask.reshape(-1).bool()
    a = torch.eye(D, dtype=torch.float64)[keep]
    mean, cov = _posterior(prior, a, y.reshape(D)[keep], 0.1)
    sd = cov.diag().sqrt()[~keep]

    def error(**options: int) -> float:
        rec = reconstruct(prior, op, y, method="repaint", samples=500, generator=g, **options)
        return float(((rec.mean.reshape(D) - mean)[~keep] / sd).abs().max())

    assert error(steps=50, jump_length=5, jump_n_sample=10) < 0.3
    assert error(steps=50, jump_n_sample=1) > 0.6  # no resampling: the known pixels never inform the rest


def test_repaint_schedule_counts() -> None:
    order = repaint_schedule(10, 2, 3)
    assert order[0] == 0 and order[-1] == 10
    downs = sum(1 for a, b in zip(order, order[1:], strict=False) if b == a + 1)
    assert downs == 10 + 2 * 2 * 4  # 4 jump points (2, 4, 6, 8), 2 extra passes of 2 steps each
    assert repaint_schedule(5, 2, 1) == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("method", ["projection", "dps", "repaint"])
def test_solvers_shapes_determinism_and_data_consistency(prior: GaussianOracle, method: str) -> None:
    mask = torch.ones(4, 4)
    mask[:2] = 0
    op = MaskOperator(mask, (1, 4, 4))
    y = op.A(prior.sample(3, generator=torch.Generator().manual_seed(3), dtype=torch.float64))

    def run() -> torch.Tensor:
        return reconstruct(prior, op, y, method=method, samples=2, generator=torch.Generator().manual_seed(4), steps=20)

    a, b = run(), run()
    assert a.samples.shape == (2, 3, 1, 4, 4) and a.mean.shape == a.std.shape == (3, 1, 4, 4)
    assert torch.equal(a.samples, b.samples)
    if method != "dps":  # projection and RePaint put the noiseless known pixels back exactly
        assert torch.allclose(op.A(a.samples[0]), y, atol=1e-6)


def test_projection_runs_a_non_mask_operator(prior: GaussianOracle) -> None:
    op = DownsampleOperator(2, (1, 4, 4))
    y = op.A(prior.sample(2, generator=torch.Generator().manual_seed(5), dtype=torch.float64))
    rec = reconstruct(
        prior, op, y, method="projection", samples=3, generator=torch.Generator().manual_seed(6), steps=10
    )
    assert torch.allclose(op.A(rec.mean), y, atol=1e-6) and rec.nfe == 10


def test_bad_requests_are_refused(prior: GaussianOracle) -> None:
    op = DownsampleOperator(2, (1, 4, 4))
    y = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    with pytest.raises(DiffsightError, match="choose one of"):
        reconstruct(prior, op, y, method="magic")
    with pytest.raises(DiffsightError, match="MaskOperator"):
        reconstruct(prior, op, y, method="repaint")
    with pytest.raises(DiffsightError, match="IdentityOperator"):
        reconstruct(prior, op, y, method="denoise")
    with pytest.raises(DiffsightError, match="shaped"):
        reconstruct(prior, op, torch.zeros(1, 1, 4, 4), method="projection")
    with pytest.raises(DiffsightError, match="positive integer"):
        reconstruct(prior, op, y, samples=0)
    with pytest.raises(DiffsightError, match="noise_sigma > 0"):
        denoise_posterior(prior, torch.zeros(1, 1, 4, 4), 0.0)
