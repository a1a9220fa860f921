"""Exact posterior denoising of Gaussian-noisy images: start the reverse process at the noise level itself.

If ``y = x0 + sigma_y z`` with z standard normal, then ``y`` *is* a draw of the diffusion state
``x_{sigma_y}`` (EDM's ``x = x0 + sigma n``), and the posterior ``p(x0 | y)`` is exactly the law of the
reverse process started from ``y`` at ``sigma_y`` (Karras et al. 2022, eq. 6; Kadkhodaie & Simoncelli 2021).
No guidance, no approximation: with the exact denoiser and a stochastic sampler (DDPM ancestral steps) the
samples converge to the true posterior as the steps shrink; tests/tasks checks it against the closed-form
Gaussian posterior with a chi-square test. A deterministic sampler from ``y`` returns one point instead (close
to the posterior mean at few steps, not a posterior sample).
"""

from __future__ import annotations

from typing import Any

import torch

from diffsight.errors import DiffsightError
from diffsight.models.denoiser import Denoiser
from diffsight.sampling.registry import get_sampler
from diffsight.tasks.stepping import solver_sigmas

__all__ = ["denoise_posterior"]


def denoise_posterior(
    denoiser: Denoiser,
    y: torch.Tensor,
    noise_sigma: float,
    *,
    steps: int = 50,
    sampler: str = "ddpm",
    cond: Any = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One posterior sample per noisy image ``y`` (B, *event) with white Gaussian noise of std ``noise_sigma``.

    Runs ``sampler`` on a Karras schedule of ``steps`` levels from ``noise_sigma`` down to 0, starting at ``y``.
    """
    sigma_max = float(getattr(denoiser, "sigma_max", float("inf")))
    if not noise_sigma > 0:
        raise DiffsightError(f"denoising needs the noise level of the image, noise_sigma > 0; got {noise_sigma}")
    if noise_sigma > sigma_max:
        raise DiffsightError(f"noise_sigma {noise_sigma:g} exceeds the model's sigma_max {sigma_max:g}")
    sigmas = solver_sigmas(denoiser, steps, sigma_max=noise_sigma)
    return get_sampler(sampler)(denoiser, y.clone(), sigmas, cond=cond, generator=generator)
