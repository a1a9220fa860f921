"""EDM preconditioning (Karras et al. 2022, Table 1): coefficients and a known-answer denoiser."""

from __future__ import annotations

import math

import pytest
import torch

from diffsight.errors import DiffsightError, ShapeError
from diffsight.models import EDMPrecond, edm_coefficients
from diffsight.oracles import GaussianOracle


def test_coefficients_closed_form() -> None:
    sigma, sd = torch.tensor([0.5, 2.0], dtype=torch.float64), 0.5
    c_skip, c_out, c_in, c_noise = edm_coefficients(sigma, sd)
    torch.testing.assert_close(c_skip, torch.tensor([0.5, 0.25 / 4.25], dtype=torch.float64))
    torch.testing.assert_close(c_out, torch.tensor([0.25 / math.sqrt(0.5), 1.0 / math.sqrt(4.25)], dtype=torch.float64))
    torch.testing.assert_close(c_in, torch.tensor([1 / math.sqrt(0.5), 1 / math.sqrt(4.25)], dtype=torch.float64))
    torch.testing.assert_close(c_noise, sigma.log() / 4)
    # unit-variance training target (EDM eq. 8): c_skip^2 sd^2 ... the effective target has variance 1
    target_var = (sd**2 * (1 - c_skip) ** 2 + c_skip**2 * sigma**2) / c_out**2
    torch.testing.assert_close(target_var, torch.ones(2, dtype=torch.float64))


def test_zero_backbone_is_the_optimal_denoiser_of_isotropic_data() -> None:
    """For data N(0, sigma_data^2 I) the optimal D is c_skip x, so F = 0 is exact."""
    sd = 0.7
    den = EDMPrecond(lambda x, c, cond: torch.zeros_like(x), sigma_data=sd)
    oracle = GaussianOracle(torch.zeros(2, 3), sd**2 * torch.eye(6))
    x, sigma = torch.randn(5, 2, 3, dtype=torch.float64), torch.linspace(0.01, 50, 5, dtype=torch.float64)
    torch.testing.assert_close(den(x, sigma), oracle(x, sigma))


def test_backbone_sees_scaled_input_and_noise_embedding() -> None:
    seen = {}

    def backbone(x_in: torch.Tensor, c_noise: torch.Tensor, cond: object) -> torch.Tensor:
        seen.update(x_in=x_in, c_noise=c_noise, cond=cond)
        return torch.zeros_like(x_in)

    den = EDMPrecond(backbone, sigma_data=0.5)
    x = torch.randn(3, 4, dtype=torch.float64)
    den(x, torch.tensor(3.0, dtype=torch.float64), cond="label")  # a scalar sigma broadcasts
    torch.testing.assert_close(seen["x_in"], x / math.sqrt(9.25))
    torch.testing.assert_close(seen["c_noise"], torch.full((3,), math.log(3.0) / 4, dtype=torch.float64))
    assert seen["cond"] == "label"


def test_validation() -> None:
    with pytest.raises(DiffsightError, match="sigma_data > 0"):
        EDMPrecond(lambda x, c, k: x, sigma_data=0.0)
    den = EDMPrecond(lambda x, c, k: x[:, :1])
    with pytest.raises(ShapeError, match="backbone returned"):
        den(torch.randn(2, 3), torch.ones(2))
    with pytest.raises(ShapeError, match="one value per sample"):
        EDMPrecond(lambda x, c, k: x)(torch.randn(2, 3), torch.ones(3))
