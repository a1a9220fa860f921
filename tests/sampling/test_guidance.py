"""Classifier-free guidance: the linear combination, one batched call, and a Gaussian known answer."""

from __future__ import annotations

import pytest
import torch

from diffsight.oracles import GaussianOracle
from diffsight.sampling import ClassifierFreeGuidance, karras_sigmas, sample

MEANS = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 0.0]], dtype=torch.float64)  # class 2 = null


class ClassGaussians(torch.nn.Module):
    """Exact conditional denoiser: class c has data N(MEANS[c], I); it counts its calls and batch sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []
        self.oracles = [GaussianOracle(m, torch.eye(2)) for m in MEANS]

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.shape[0])
        every = torch.stack([oracle(x, sigma) for oracle in self.oracles])  # (3, B, 2): each class's answer
        return every[cond, torch.arange(x.shape[0])]


@pytest.mark.parametrize("scale", [0.0, 1.0, 3.0])
def test_guided_is_the_linear_combination(scale: float) -> None:
    base = ClassGaussians()
    cfg = ClassifierFreeGuidance(base, scale=scale, null_cond=2)
    x, sigma, cond = (
        torch.randn(4, 2, dtype=torch.float64),
        torch.full((4,), 1.5, dtype=torch.float64),
        torch.tensor([0, 1, 0, 1]),
    )
    d_cond, d_null = base(x, sigma, cond), base(x, sigma, torch.full((4,), 2))
    torch.testing.assert_close(cfg(x, sigma, cond), d_null + scale * (d_cond - d_null))


def test_one_network_call_per_evaluation() -> None:
    base = ClassGaussians()
    cfg = ClassifierFreeGuidance(base, scale=2.0, null_cond=torch.tensor(2))
    sample(
        "euler",
        cfg,
        10 * torch.randn(3, 2, dtype=torch.float64),
        karras_sigmas(4, sigma_max=10.0),
        cond=torch.tensor([0, 1, 0]),
    )
    assert base.calls == [6, 6, 6, 6]  # conditional and null branch in one batch of 2B, 4 steps


def test_guidance_pushes_samples_past_the_class_mean() -> None:
    """Gaussian known answer: with unit-variance classes whose null model is N(0, I), guidance scale w
    moves the sample mean at low noise to w * mu_c (the guided score is w * score_c + (1 - w) * score_null,
    a Gaussian with mean w * mu_c and the same covariance)."""
    cfg = ClassifierFreeGuidance(ClassGaussians(), scale=2.0, null_cond=2)
    gen = torch.Generator().manual_seed(0)
    # start from the exact noisy marginal of N(w mu_c, I) at sigma = 30
    x = torch.tensor([4.0, 0.0], dtype=torch.float64) + (1 + 30.0**2) ** 0.5 * torch.randn(
        2000, 2, generator=gen, dtype=torch.float64
    )
    out = sample("heun", cfg, x, karras_sigmas(30, sigma_max=30.0), cond=torch.zeros(2000, dtype=torch.long))
    torch.testing.assert_close(out.mean(0), torch.tensor([4.0, 0.0], dtype=torch.float64), atol=0.1, rtol=0)
    assert abs(torch.cov(out.T)[0, 0].item() - 1.0) < 0.1  # the class covariance is kept
