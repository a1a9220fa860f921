"""Denoising losses: EDM's weighted x0 loss and DDPM's eps / v / x0 regression.

EDM (Karras et al. 2022, sec. 5 and Table 1): ln sigma ~ N(P_mean, P_std^2), loss
``lambda(sigma) * ||D(x + sigma n; sigma) - x||^2`` with ``lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2``,
which makes the effective target of the raw network unit-variance at every sigma.

VP (Ho et al. 2020, eq. 14; v-prediction: Salimans & Ho 2022, sec. 4): ``t ~ U{0..T-1}``,
``x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps`` and plain MSE on eps, v or x.

Both take the random draws as arguments (drawn by the trainer from its checkpointed generator), so the loss is a
pure function and resumed training can reproduce it exactly.
"""

from __future__ import annotations

from typing import Any

import torch

from diffsight.models.parametrization import per_sample

__all__ = ["edm_loss", "edm_sigmas", "vp_loss"]


def edm_sigmas(normal: torch.Tensor, p_mean: float, p_std: float) -> torch.Tensor:
    """Log-normal noise levels from standard-normal draws ``normal`` (B,)."""
    return (normal * p_std + p_mean).exp()


def edm_loss(
    denoiser: Any,
    x: torch.Tensor,
    sigma: torch.Tensor,
    noise: torch.Tensor,
    cond: Any,
    sigma_data: float,
) -> torch.Tensor:
    """Mean over batch and elements of the EDM-weighted squared x0 error."""
    weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2  # (B,)
    x0_hat = denoiser(x + per_sample(sigma, x) * noise, sigma, cond)
    return (per_sample(weight, x) * (x0_hat - x).square()).mean()


def vp_loss(
    network: Any,
    x: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
    cond: Any,
    alphas_cumprod: torch.Tensor,
    prediction_type: str,
) -> torch.Tensor:
    """MSE between the network output ``network(x_t, t, cond)`` and its target (eps, v or x)."""
    abar = alphas_cumprod.to(x.device, x.dtype)[t]  # (B,)
    alpha, sigma = abar.sqrt(), (1 - abar).sqrt()
    x_t = per_sample(alpha, x) * x + per_sample(sigma, x) * noise
    if prediction_type == "epsilon":
        target = noise
    elif prediction_type == "v_prediction":
        target = per_sample(alpha, x) * noise - per_sample(sigma, x) * x
    else:
        target = x
    return (network(x_t, t, cond) - target).square().mean()
