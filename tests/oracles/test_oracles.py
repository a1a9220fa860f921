"""The oracles against brute force: Monte-Carlo posterior means, autograd scores, normalised densities."""

from __future__ import annotations

import math

import pytest
import torch

from diffsight.errors import DiffsightError, ShapeError
from diffsight.oracles import EmpiricalOracle, GaussianMixtureOracle, GaussianOracle


def _gauss() -> GaussianOracle:
    return GaussianOracle(torch.tensor([1.0, -2.0]), torch.tensor([[2.0, 0.8], [0.8, 0.5]]))


def test_gaussian_denoiser_is_the_posterior_mean() -> None:
    """Self-normalised importance sampling of E[x0 | x] with prior samples as proposals."""
    g = _gauss()
    x0 = g.sample(400_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x, sigma = torch.tensor([[0.5, -1.0]], dtype=torch.float64), 0.8
    w = torch.softmax(-((x - x0) ** 2).sum(1) / (2 * sigma**2), 0)
    torch.testing.assert_close(g(x, torch.tensor([sigma]))[0], (w[:, None] * x0).sum(0), atol=0.02, rtol=0)


@pytest.mark.parametrize("oracle", [_gauss(), GaussianMixtureOracle([0.3, 0.7], [[1.0, 1.0], [-1.0, 0.0]], [0.2, 0.5])])
def test_score_is_the_gradient_of_log_prob(oracle: torch.nn.Module) -> None:
    x = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    sigma = torch.full((5,), 0.7, dtype=torch.float64)
    (grad,) = torch.autograd.grad(oracle.log_prob(x, sigma).sum(), x)
    torch.testing.assert_close(oracle.score(x, sigma), grad)
    torch.testing.assert_close(oracle.score(x, sigma), (oracle(x, sigma) - x) / 0.49)


def test_densities_are_normalised() -> None:
    grid = torch.linspace(-8, 8, 401, dtype=torch.float64)
    pts = torch.cartesian_prod(grid, grid)
    cell = (grid[1] - grid[0]) ** 2
    mix = GaussianMixtureOracle([0.3, 0.7], [[1.0, 1.0], [-1.0, 0.0]], [0.2, 0.5])
    emp = EmpiricalOracle(torch.tensor([[0.0, 0.0], [1.0, 2.0], [-2.0, 1.0]], dtype=torch.float64))
    for logp in (_gauss().log_prob(pts, 0.3), mix.log_prob(pts, 0.3), emp.log_prob(pts, 0.5)):
        assert (logp.exp().sum() * cell).item() == pytest.approx(1.0, abs=1e-3)


def test_ode_solution_composes_and_solves_the_ode() -> None:
    g = _gauss()
    x = g.sample(4, 10.0, dtype=torch.float64)
    torch.testing.assert_close(g.ode_solution(g.ode_solution(x, 10.0, 2.0), 2.0, 0.1), g.ode_solution(x, 10.0, 0.1))
    # dx/dsigma = (x - D(x, sigma)) / sigma, by central differences at sigma = 2
    h, y = 1e-4, g.ode_solution(x, 10.0, 2.0)
    deriv = (g.ode_solution(x, 10.0, 2.0 + h) - g.ode_solution(x, 10.0, 2.0 - h)) / (2 * h)
    torch.testing.assert_close(deriv, (y - g(y, torch.full((4,), 2.0, dtype=torch.float64))) / 2.0, atol=1e-6, rtol=0)


def test_mixture_sampling_and_responsibilities() -> None:
    mix = GaussianMixtureOracle([0.25, 0.75], [[3.0, 0.0], [-3.0, 0.0]], 0.1)
    x, comp = mix.sample(4000, generator=torch.Generator().manual_seed(1), return_components=True)
    assert abs(comp.float().mean().item() - 0.75) < 0.03
    r = mix.responsibilities(x.double(), 0.01)
    assert (r.argmax(1) == comp).float().mean() == 1.0
    # at huge noise the responsibilities fall back to the weights
    torch.testing.assert_close(
        mix.responsibilities(torch.zeros(1, 2), 1e4)[0], torch.tensor([0.25, 0.75]), atol=1e-4, rtol=0
    )


def test_commitment_moment_in_one_dimension() -> None:
    """Two unit-variance components at +-m: at sigma with abar m^2 = 1 - abar, i.e. sigma^2 = m^2 in sigma
    coordinates, the responsibility of a point at the mean of its component's noisy law is analytic."""
    m = 2.0
    mix = GaussianMixtureOracle([0.5, 0.5], [[m], [-m]], 1.0)
    sigma = m  # sigma^2 = (1 - abar) / abar = m^2
    x = torch.tensor([[m]], dtype=torch.float64)
    r = mix.responsibilities(x, sigma)[0, 0].item()
    var = 1 + sigma**2
    expected = 1 / (1 + math.exp(-2 * m * m / var))  # logistic in the log-likelihood ratio 2 m x / var
    assert r == pytest.approx(expected, rel=1e-12)


def test_empirical_denoiser_memorizes_and_chunks() -> None:
    data = torch.randn(100, 3, dtype=torch.float64)
    full, chunked = EmpiricalOracle(data), EmpiricalOracle(data, chunk_size=7)
    x = data[:10] + 1e-3 * torch.randn(10, 3, dtype=torch.float64)
    torch.testing.assert_close(full(x, torch.full((10,), 1e-3)), data[:10], atol=1e-6, rtol=0)
    y = torch.randn(10, 3, dtype=torch.float64)
    torch.testing.assert_close(full(y, torch.full((10,), 0.8)), chunked(y, torch.full((10,), 0.8)))
    torch.testing.assert_close(full.log_prob(y, 0.8), chunked.log_prob(y, 0.8))
    assert full.nearest(data[3:4])[1].item() == 3


def test_validation() -> None:
    with pytest.raises(ShapeError, match="cov must have shape"):
        GaussianOracle(torch.zeros(2), torch.eye(3))
    with pytest.raises(DiffsightError, match="positive semi-definite"):
        GaussianOracle(torch.zeros(2), torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
    with pytest.raises(DiffsightError, match="symmetric"):
        GaussianOracle(torch.zeros(2), torch.tensor([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ShapeError, match="one row per weight"):
        GaussianMixtureOracle([0.5, 0.5], [[0.0, 0.0]])
    with pytest.raises(ShapeError, match="N >= 1"):
        EmpiricalOracle(torch.zeros(0, 2))
