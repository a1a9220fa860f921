"""Known answers for the losses: with the exact denoiser of Gaussian data they take closed-form values."""

from __future__ import annotations

import math

import torch

from diffsight.oracles import GaussianOracle
from diffsight.training.loss import edm_loss, edm_sigmas, vp_loss


def test_edm_sigmas_are_log_normal() -> None:
    normal = torch.randn(200_000, generator=torch.Generator().manual_seed(0))
    log_sigma = edm_sigmas(normal, -1.2, 1.2).log()
    assert abs(log_sigma.mean().item() + 1.2) < 0.01
    assert abs(log_sigma.std().item() - 1.2) < 0.01


def test_edm_loss_of_the_optimal_denoiser_is_one_at_every_sigma() -> None:
    # Data N(0, s^2 I): the optimal denoiser's error per coordinate is sigma^2 s^2 / (sigma^2 + s^2); EDM's weight
    # (sigma^2 + s^2) / (sigma s)^2 with sigma_data = s turns it into exactly 1 (EDM, App. B.6).
    s, d, n = 0.7, 4, 40_000
    oracle = GaussianOracle(torch.zeros(d), s**2 * torch.eye(d))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, d, generator=g) * s
    for sigma_value in (0.05, 0.5, 3.0, 30.0):
        sigma = torch.full((n,), sigma_value)
        loss = edm_loss(oracle, x, sigma, torch.randn(n, d, generator=g), None, sigma_data=s)
        assert abs(loss.item() - 1.0) < 0.03, (sigma_value, loss.item())


def test_edm_loss_of_a_wrong_denoiser_is_higher() -> None:
    s, d, n = 0.7, 4, 20_000
    oracle = GaussianOracle(torch.zeros(d), s**2 * torch.eye(d))
    g = torch.Generator().manual_seed(2)
    x = torch.randn(n, d, generator=g) * s
    sigma = torch.full((n,), 0.5)
    noise = torch.randn(n, d, generator=g)

    def scaled(x_in: torch.Tensor, sig: torch.Tensor, cond: object) -> torch.Tensor:
        return 1.3 * oracle(x_in, sig, cond)

    assert edm_loss(scaled, x, sigma, noise, None, s) > edm_loss(oracle, x, sigma, noise, None, s) + 0.05


def test_vp_eps_loss_of_the_optimal_predictor_matches_closed_form() -> None:
    # x ~ N(0, s^2), x_t = a x + b eps: E[eps | x_t] = b x_t / (a^2 s^2 + b^2), error a^2 s^2 / (a^2 s^2 + b^2).
    s, n = 0.8, 200_000
    abar = torch.tensor([0.3])
    a, b = math.sqrt(0.3), math.sqrt(0.7)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(n, 1, generator=g) * s

    def optimal_eps(x_t: torch.Tensor, t: torch.Tensor, cond: object) -> torch.Tensor:
        return b * x_t / (a**2 * s**2 + b**2)

    t = torch.zeros(n, dtype=torch.long)
    loss = vp_loss(optimal_eps, x, t, torch.randn(n, 1, generator=g), None, abar, "epsilon")
    expected = a**2 * s**2 / (a**2 * s**2 + b**2)
    assert abs(loss.item() - expected) < 0.01


def test_vp_targets_v_and_sample() -> None:
    x = torch.randn(6, 3)
    noise = torch.randn(6, 3)
    abar = torch.tensor([0.64])
    t = torch.zeros(6, dtype=torch.long)
    a, b = 0.8, 0.6

    def v_net(x_t: torch.Tensor, t: torch.Tensor, cond: object) -> torch.Tensor:
        return a * noise - b * x

    def x_net(x_t: torch.Tensor, t: torch.Tensor, cond: object) -> torch.Tensor:
        return x

    assert vp_loss(v_net, x, t, noise, None, abar, "v_prediction").item() < 1e-12
    assert vp_loss(x_net, x, t, noise, None, abar, "sample").item() < 1e-12
    assert vp_loss(x_net, x, t, noise, None, abar, "epsilon").item() > 0.1
