"""Known-answer tests of every sampler against the Gaussian and empirical oracles.

- Distribution: samples drawn with the exact Gaussian denoiser match N(mu, Sigma) in mean and covariance,
  and the same check fails for a mis-scheduled denoiser (sigma off by 10%) and for a sign error.
- Order of accuracy: the deterministic solvers converge to the closed-form probability-flow ODE solution,
  with error ratios of about 2 (Euler) and 4 (Heun, DPM-Solver++(2M)) when the number of steps doubles.
- Memorization: samples from the empirical oracle land on training points.
"""

from __future__ import annotations

import pytest
import torch

from conftest import moment_errors
from diffsight.oracles import EmpiricalOracle, GaussianOracle
from diffsight.sampling import DETERMINISTIC_SAMPLERS, SAMPLERS, karras_sigmas, sample

# steps at which each sampler's discretisation bias is well below the tolerance (measured: cov error <= 0.02)
STEPS = {"ddim": 200, "euler": 200, "heun": 50, "dpmpp_2m": 50, "dpmpp_3m": 30, "ddpm": 500, "pc": 250}
MEAN_TOL, COV_TOL = 0.06, 0.08  # n = 10000: mean s.e. ~0.014, covariance s.e. ~0.015
N_SAMPLES = 10_000


class MisScheduled(torch.nn.Module):
    """The right denoiser asked at the wrong noise level: what a perturbed schedule does."""

    def __init__(self, oracle: GaussianOracle, factor: float) -> None:
        super().__init__()
        self.oracle, self.factor = oracle, factor

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: object = None) -> torch.Tensor:
        return self.oracle(x, sigma * self.factor)


class SignError(torch.nn.Module):
    """x0 reflected through x: the ODE slope (x - D)/sigma flips sign."""

    def __init__(self, oracle: GaussianOracle) -> None:
        super().__init__()
        self.oracle = oracle

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: object = None) -> torch.Tensor:
        return 2 * x - self.oracle(x, sigma)


def _draw(name: str, denoiser: torch.nn.Module, oracle: GaussianOracle) -> torch.Tensor:
    sigmas = karras_sigmas(STEPS[name], sigma_max=80.0)
    x = oracle.sample(N_SAMPLES, float(sigmas[0]), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    kwargs = {} if name in DETERMINISTIC_SAMPLERS else {"generator": torch.Generator().manual_seed(1)}
    with torch.no_grad():
        return sample(name, denoiser, x, sigmas, **kwargs)


def _within(samples: torch.Tensor, oracle: GaussianOracle) -> bool:
    m_err, c_err = moment_errors(samples, oracle.mean, oracle.cov)
    return bool(torch.isfinite(samples).all()) and m_err < MEAN_TOL and c_err < COV_TOL


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_samples_match_gaussian(name: str, gauss2d: GaussianOracle) -> None:
    samples = _draw(name, gauss2d, gauss2d)
    m_err, c_err = moment_errors(samples, gauss2d.mean, gauss2d.cov)
    assert m_err < MEAN_TOL and c_err < COV_TOL, (m_err, c_err)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("factor", [1.1, 0.9])
def test_moment_check_catches_a_perturbed_schedule(name: str, factor: float, gauss2d: GaussianOracle) -> None:
    assert not _within(_draw(name, MisScheduled(gauss2d, factor), gauss2d), gauss2d)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_moment_check_catches_a_sign_error(name: str, gauss2d: GaussianOracle) -> None:
    assert not _within(_draw(name, SignError(gauss2d), gauss2d), gauss2d)


def _ode_errors(name: str, oracle: GaussianOracle, steps: list[int]) -> list[float]:
    """Relative error at sigma_min against the exact probability-flow ODE map from sigma_max."""
    sigma_min, sigma_max = 0.05, 80.0
    x = oracle.sample(64, sigma_max, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = oracle.ode_solution(x, sigma_max, sigma_min)
    errors = []
    for n in steps:
        sigmas = karras_sigmas(n, sigma_min=sigma_min, sigma_max=sigma_max)[:-1]  # stop at sigma_min
        y = sample(name, oracle, x, sigmas)
        errors.append(((y - exact).norm() / exact.norm()).item())
    return errors


@pytest.mark.parametrize(
    ("name", "lo", "hi"),
    [("euler", 1.8, 2.2), ("ddim", 1.8, 2.2), ("heun", 3.5, 4.8), ("dpmpp_2m", 3.5, 4.8)],
)
def test_order_of_accuracy(name: str, lo: float, hi: float, gauss2d: GaussianOracle) -> None:
    errors = _ode_errors(name, gauss2d, [32, 64, 128])
    ratios = [errors[i] / errors[i + 1] for i in range(len(errors) - 1)]
    assert all(lo < r < hi for r in ratios), (errors, ratios)


def test_third_order_solver_beats_second_order(gauss2d: GaussianOracle) -> None:
    steps = [16, 32]
    e2, e3 = _ode_errors("dpmpp_2m", gauss2d, steps), _ode_errors("dpmpp_3m", gauss2d, steps)
    assert all(b < 0.5 * a for a, b in zip(e2, e3, strict=True)), (e2, e3)
    assert e3[0] / e3[1] > 3.5


def test_ddim_is_euler(gauss2d: GaussianOracle) -> None:
    """DDIM (eta = 0) is the Euler method of the probability-flow ODE in sigma coordinates (EDM, sec. 3)."""
    sigmas = karras_sigmas(10)
    x = gauss2d.sample(8, 80.0, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(sample("ddim", gauss2d, x, sigmas), sample("euler", gauss2d, x, sigmas))


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_empirical_oracle_samples_land_on_training_points(name: str) -> None:
    gen = torch.Generator().manual_seed(0)
    train = torch.randn(50, 2, 3, generator=gen, dtype=torch.float64)  # 50 "images" of shape (2, 3)
    oracle = EmpiricalOracle(train)
    sigmas = karras_sigmas(40, sigma_min=0.01, sigma_max=20.0)
    x = 20.0 * torch.randn(32, 2, 3, generator=gen, dtype=torch.float64)
    kwargs = {} if name in DETERMINISTIC_SAMPLERS else {"generator": torch.Generator().manual_seed(1)}
    out = sample(name, oracle, x, sigmas, **kwargs)
    dist, idx = oracle.nearest(out)
    assert dist.max() < 1e-3, dist.max()
    assert idx.unique().numel() > 5  # not all collapsed onto one point
