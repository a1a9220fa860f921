"""Diffusion posterior sampling (DPS; Chung, Kim, McCann, Klasky & Ye, ICLR 2023) for any differentiable operator.

Notation: ``x_i`` the state at ``s_i``, ``x0_hat = D(x_i, s_i)`` (Tweedie), ``r = y - A(x0_hat)``.

Algorithm 1 of the paper, in sigma units and for any sampler ``S``:

1. ``x0_hat = D(x_i, s_i)`` with gradients on, ``g = grad_{x_i} ||r||`` (the non-squared norm, as in the
   reference code; this equals the paper's step ``zeta_i = zeta / ||r||`` on the squared norm);
2. ``x' = S(x_i, s_i -> s_{i+1})``, reusing ``x0_hat`` (one network evaluation per step, plus one backward);
3. ``x_{i+1} = x' - zeta * g``.

The likelihood gradient flows back through the network (one vector-Jacobian product per step), so this is the
most expensive solver here per step, but it needs nothing from A but differentiability: it works for every
operator, linear or not. ``zeta`` (paper: 0.3 to 1.0 at 1000 steps) is per step; fewer steps want a larger one.
DPS is an approximation (it replaces p(y | x_i) by p(y | x0_hat)); its posterior spread is not calibrated.
"""

from __future__ import annotations

from typing import Any

import torch

from diffsight.errors import DiffsightError
from diffsight.models.denoiser import Denoiser
from diffsight.tasks.operators import LinearOperator
from diffsight.tasks.stepping import sampler_step, solver_sigmas

__all__ = ["dps"]


class _Reuse:
    """A denoiser that answers the sampler's first call at this step with the estimate DPS already computed."""

    def __init__(self, denoiser: Denoiser, x: torch.Tensor, x0: torch.Tensor) -> None:
        self.denoiser, self.x, self.x0 = denoiser, x, x0
        self.sigma_min = getattr(denoiser, "sigma_min", 0.0)
        self.sigma_max = getattr(denoiser, "sigma_max", float("inf"))

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: Any = None) -> torch.Tensor:
        if self.x0 is not None and x is self.x:
            x0, self.x0 = self.x0, None
            return x0
        return self.denoiser(x, sigma, cond)


def dps(
    denoiser: Denoiser,
    operator: LinearOperator,
    y: torch.Tensor,
    *,
    steps: int = 100,
    zeta: float = 1.0,
    sampler: str = "ddpm",
    cond: Any = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One DPS sample per measurement ``y`` (B, *measurement_shape)."""
    if not zeta >= 0:
        raise DiffsightError(f"zeta (the DPS step size) must be >= 0, got {zeta}")
    b = operator.A_T(y).shape[0]
    sigmas = solver_sigmas(denoiser, steps).tolist()
    x = sigmas[0] * torch.randn((b, *operator.event_shape), generator=generator, dtype=y.real.dtype, device=y.device)
    for i in range(len(sigmas) - 1):
        s, sn = sigmas[i], sigmas[i + 1]
        with torch.enable_grad():  # DPS needs the gradient through the network, whatever the caller's mode
            xg = x.detach().requires_grad_(True)
            x0 = denoiser(xg, xg.new_full((b,), s), cond)
            residual = (y - operator.A(x0)).abs().reshape(b, -1)  # (B, m); abs() also covers complex y
            norm = residual.square().sum(1).sqrt()  # (B,)
            (grad,) = torch.autograd.grad(norm.sum(), xg)
        xd = x.detach()
        x_next = sampler_step(sampler, _Reuse(denoiser, xd, x0.detach()), xd, s, sn, cond=cond, generator=generator)
        x = x_next - zeta * grad if sn > 0 else x_next
    return x.detach()
