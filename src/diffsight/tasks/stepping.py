"""Drive any registered sampler one step at a time, and count network evaluations.

Inverse-problem solvers must act *between* sampler steps (RePaint merges the known pixels, DPS adds a
likelihood gradient) or *inside* the denoiser (projection solvers). They never copy a sampler: a step from
``s`` to ``sn`` is the sampler itself run on the two-entry schedule ``[s, sn]`` (STYLE.md, principle 8).
Single-step and ancestral samplers (ddpm, ddim, euler, heun, pc) behave exactly as in a full run; multistep
solvers (dpmpp_2m, dpmpp_3m) lose their history and run at first order.
"""

from __future__ import annotations

from typing import Any

import torch

from diffsight.errors import DiffsightError
from diffsight.models.denoiser import Denoiser
from diffsight.sampling.registry import get_sampler
from diffsight.sampling.schedules import karras_sigmas

__all__ = ["CountingDenoiser", "sampler_step", "solver_sigmas"]


def sampler_step(
    sampler: str,
    denoiser: Denoiser,
    x: torch.Tensor,
    sigma: float,
    sigma_next: float,
    *,
    cond: Any = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One step of the sampler called ``sampler`` from noise level ``sigma`` to ``sigma_next`` (< sigma)."""
    run = get_sampler(sampler)
    sigmas = torch.tensor([float(sigma), float(sigma_next)], dtype=torch.float64)
    return run(denoiser, x, sigmas, cond=cond, generator=generator)


def solver_sigmas(denoiser: Denoiser, steps: int, *, sigma_max: float | None = None, rho: float = 7.0) -> torch.Tensor:
    """A Karras schedule (EDM eq. 5) of ``steps`` levels from ``sigma_max`` (default: the model's) down to the
    model's ``sigma_min``, then 0."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise DiffsightError(f"steps must be a positive integer, got {steps!r}")
    lo = float(getattr(denoiser, "sigma_min", 0.002)) or 0.002
    hi = float(getattr(denoiser, "sigma_max", 80.0)) if sigma_max is None else float(sigma_max)
    if hi == float("inf"):
        hi = 80.0
    if not hi > lo:
        raise DiffsightError(f"the schedule's top noise level {hi:g} must exceed the model's sigma_min {lo:g}")
    return karras_sigmas(steps, lo, hi, rho)


class CountingDenoiser:
    """Wraps a denoiser and counts its calls (one call = one batched network evaluation)."""

    def __init__(self, denoiser: Denoiser) -> None:
        self.denoiser = denoiser
        self.sigma_min = getattr(denoiser, "sigma_min", 0.0)
        self.sigma_max = getattr(denoiser, "sigma_max", float("inf"))
        self.calls = 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: Any = None) -> torch.Tensor:
        self.calls += 1
        return self.denoiser(x, sigma, cond)
