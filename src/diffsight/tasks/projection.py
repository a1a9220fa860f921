"""Projection solver for linear inverse problems: a data-consistent denoiser, run by any sampler.

The range-null-space decomposition of DDNM (Wang, Yu & Zhang, ICLR 2023, eq. 7) keeps the part of the
denoised estimate that the measurement cannot see and takes the rest from the measurement:

    x0_y = A^+ y + (I - A^+ A) x0_hat = x0_hat + A^+ (y - A x0_hat),      x0_hat = D(x, sigma).

Like DDRM (Kawar et al., NeurIPS 2022), which does the same in the SVD basis of A, it costs one network
evaluation per step and needs only ``A`` and ``A^+`` (closed-form or conjugate gradients, see
:mod:`diffsight.tasks.operators`). With measurement noise ``sigma_y`` the hard projection would copy the noise
(and, for an ill-conditioned A such as a blur, amplify it), so the step becomes the data-proximal step of
DiffPIR (Zhu et al., CVPR 2023, eq. 13) with the prior's uncertainty about x0 taken as ``sigma``:

    x0_y = argmin_x ||y - A x||^2 / sigma_y^2 + ||x - x0_hat||^2 / sigma^2
         = x0_hat + A^T (A A^T + (sigma_y / sigma)^2 I)^-1 (y - A x0_hat),

a Tikhonov-damped pseudo-inverse (``pinv(..., damping=(sigma_y / sigma)^2)``). At high noise levels the
measurement wins; near the end the noisy ``y`` is no longer trusted over the prior. For a mask this is the
Wiener weight ``sigma^2 / (sigma^2 + sigma_y^2)`` on the observed pixels.

Because the correction lives inside the denoiser, every sampler in the registry runs it unchanged.
"""

from __future__ import annotations

from typing import Any

import torch

from diffsight.errors import DiffsightError
from diffsight.models.denoiser import Denoiser
from diffsight.sampling.registry import get_sampler
from diffsight.tasks.operators import LinearOperator
from diffsight.tasks.stepping import solver_sigmas

__all__ = ["ProjectedDenoiser", "projection_solve"]


class ProjectedDenoiser:
    """``D_y(x, sigma) = D + A^T (A A^T + (sigma_y / sigma)^2 I)^-1 (y - A D)``, ``D = D(x, sigma)``: a denoiser
    whose estimates agree with the measurement ``y`` (batch (B, *measurement_shape), matching x's batch)."""

    def __init__(
        self, denoiser: Denoiser, operator: LinearOperator, y: torch.Tensor, *, cg_iterations: int = 30
    ) -> None:
        operator.A_T(y)  # shape check
        self.denoiser, self.operator, self.y = denoiser, operator, y
        self.cg_iterations = cg_iterations
        self.sigma_min = getattr(denoiser, "sigma_min", 0.0)
        self.sigma_max = getattr(denoiser, "sigma_max", float("inf"))

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: Any = None) -> torch.Tensor:
        x0 = self.denoiser(x, sigma, cond)
        residual = self.y - self.operator.A(x0)
        sy = self.operator.noise_sigma
        if sy == 0:
            return x0 + self.operator.pinv(residual, iterations=self.cg_iterations)
        s = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1)  # (B,) or one level for the batch
        if not bool((s == s[0]).all()):
            raise DiffsightError("the projection step needs one noise level for the whole batch (samplers pass one)")
        damping = (sy / max(float(s[0]), 1e-12)) ** 2
        return x0 + self.operator.pinv(residual, damping=damping, iterations=self.cg_iterations)


def projection_solve(
    denoiser: Denoiser,
    operator: LinearOperator,
    y: torch.Tensor,
    *,
    steps: int = 50,
    sampler: str = "ddpm",
    cond: Any = None,
    generator: torch.Generator | None = None,
    cg_iterations: int = 30,
) -> torch.Tensor:
    """One sample per measurement ``y``: ``sampler`` run with :class:`ProjectedDenoiser` from pure noise
    (``cg_iterations``: conjugate-gradient iterations of A^+ for operators without a closed form)."""
    b = operator.A_T(y).shape[0]
    sigmas = solver_sigmas(denoiser, steps)
    x = sigmas[0].item() * torch.randn(
        (b, *operator.event_shape), generator=generator, dtype=y.real.dtype, device=y.device
    )
    return get_sampler(sampler)(
        ProjectedDenoiser(denoiser, operator, y, cg_iterations=cg_iterations), x, sigmas, cond=cond, generator=generator
    )
