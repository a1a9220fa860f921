"""Exact conversions between eps, v, x0 and the score, checked against definitions and the Gaussian oracle."""

from __future__ import annotations

import itertools

import pytest
import torch

from diffsight.errors import UnknownNameError
from diffsight.models.parametrization import canonical, convert
from diffsight.oracles import GaussianOracle

PREDICTIONS = ["eps", "v", "x0", "score"]


def _state(alpha: float) -> dict[str, torch.Tensor | float]:
    """x_t = alpha x0 + sigma eps with every target computed from its definition."""
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 3, 5, generator=gen, dtype=torch.float64)
    eps = torch.randn(4, 3, 5, generator=gen, dtype=torch.float64)
    sigma = (1 - alpha**2) ** 0.5
    return {
        "alpha": alpha,
        "sigma": sigma,
        "x_t": alpha * x0 + sigma * eps,
        "x0": x0,
        "eps": eps,
        "v": alpha * eps - sigma * x0,
        "score": -eps / sigma,
    }


@pytest.mark.parametrize(("source", "target"), list(itertools.product(PREDICTIONS, PREDICTIONS)))
@pytest.mark.parametrize("alpha", [0.999, 0.7, 0.05])
def test_every_conversion_is_exact(source: str, target: str, alpha: float) -> None:
    st = _state(alpha)
    out = convert(st[source], source, target, st["x_t"], st["alpha"], st["sigma"])  # type: ignore[arg-type]
    torch.testing.assert_close(out, st[target], rtol=1e-9, atol=1e-9)


def test_sigma_parametrisation_is_alpha_one() -> None:
    """With alpha = 1 (x = x0 + sigma eps, not variance preserving) the same functions hold."""
    gen = torch.Generator().manual_seed(1)
    x0, eps, sigma = torch.randn(3, 2, generator=gen), torch.randn(3, 2, generator=gen), 7.0
    x = x0 + sigma * eps
    torch.testing.assert_close(convert(eps, "eps", "x0", x, 1.0, sigma), x0)
    torch.testing.assert_close(convert(x0, "x0", "score", x, 1.0, sigma), -eps / sigma)


def test_tweedie_score_of_the_gaussian_oracle() -> None:
    """score = (D(x) - x) / sigma^2 for the exact denoiser equals the closed-form score."""
    oracle = GaussianOracle(torch.tensor([1.0, -1.0, 0.5]), torch.diag(torch.tensor([2.0, 0.5, 1.0])))
    x = torch.randn(6, 3, dtype=torch.float64)
    sigma = torch.full((6, 1), 1.7, dtype=torch.float64)
    score = convert(oracle(x, sigma.flatten()), "x0", "score", x, 1.0, sigma)
    torch.testing.assert_close(score, oracle.score(x, sigma.flatten()))


def test_diffusers_names_and_errors() -> None:
    assert [canonical(n) for n in ("epsilon", "v_prediction", "sample")] == ["eps", "v", "x0"]
    with pytest.raises(UnknownNameError, match="unknown prediction type 'noise'"):
        canonical("noise")
