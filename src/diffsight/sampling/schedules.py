"""Noise schedules: functions that return a descending 1-D tensor of sigmas ending in 0.

diffsight works in the variance-exploding ("sigma") parametrisation of Karras et al. (2022), EDM, eq. 1:
``x = x0 + sigma * eps``. A variance-preserving (VP) model trained on a discrete DDPM schedule sees
``x_t = sqrt(abar_t) * x0 + sqrt(1 - abar_t) * eps``; the two are the same process up to the scaling
``x = x_t / sqrt(abar_t)`` with ``sigma_t = sqrt((1 - abar_t) / abar_t)`` (EDM, Appendix C.2).

Notation

=============  ==================================================================
``sigmas``     descending noise levels, ``sigmas[-1] == 0`` for a full schedule
``betas``      per-step DDPM variances beta_t, t = 0..T-1 (Ho et al. 2020, eq. 2)
``abar``       alpha-bar_t = prod_{s<=t} (1 - beta_s)
``t``          discrete training timestep (0 = least noise), possibly fractional
``lambda``     log-SNR, log(alpha / sigma_vp) = -log(sigma)
=============  ==================================================================

The discrete VP schedules (betas and the timestep <-> sigma map) live in
:mod:`diffsight.models.vp_schedule`, beside the adapters that need them, and are re-exported here.

Every function here is pure: it returns a new float64 tensor on the CPU (cast it where you need it).
"""

from __future__ import annotations

import math

import torch

from diffsight.errors import ScheduleError
from diffsight.models.vp_schedule import (
    BetaSchedule,
    DiscreteVPSchedule,
    TimestepSpacing,
    betas_cosine,
    betas_linear,
    betas_scaled_linear,
    make_betas,
)

__all__ = [
    "BetaSchedule",
    "DiscreteVPSchedule",
    "TimestepSpacing",
    "betas_cosine",
    "betas_linear",
    "betas_scaled_linear",
    "check_sigmas",
    "karras_sigmas",
    "loglinear_snr_sigmas",
    "make_betas",
    "ve_geometric_sigmas",
]


def _append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def _check_range(num_steps: int, sigma_min: float, sigma_max: float) -> None:
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ScheduleError(f"num_steps must be a positive integer, got {num_steps!r}")
    if not (math.isfinite(sigma_min) and math.isfinite(sigma_max)):
        raise ScheduleError(f"sigma_min and sigma_max must be finite, got {sigma_min} and {sigma_max}")
    if not 0 < sigma_min < sigma_max:
        raise ScheduleError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")


def karras_sigmas(num_steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    """EDM time steps, Karras et al. (2022) eq. 5.

    ``sigma_i = (sigma_max^(1/rho) + i/(N-1) * (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho`` for i < N, then 0.
    Returns ``num_steps + 1`` values. With ``num_steps == 1`` the schedule is ``[sigma_max, 0]``.
    """
    _check_range(num_steps, sigma_min, sigma_max)
    if rho <= 0:
        raise ScheduleError(f"rho must be positive, got {rho}")
    ramp = torch.linspace(0, 1, num_steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    if num_steps == 1:
        sigmas = torch.tensor([sigma_max], dtype=torch.float64)
    return _append_zero(sigmas)


def ve_geometric_sigmas(num_steps: int, sigma_min: float = 0.01, sigma_max: float = 50.0) -> torch.Tensor:
    """Variance-exploding geometric steps, Song et al. (2021) sec. 3.4: ``sigma_min (sigma_max/sigma_min)^(t)``.

    t runs from 1 down to 0 in ``num_steps`` equal steps; a final 0 is appended.
    """
    _check_range(num_steps, sigma_min, sigma_max)
    if num_steps == 1:
        return _append_zero(torch.tensor([sigma_max], dtype=torch.float64))
    log_sigmas = torch.linspace(math.log(sigma_max), math.log(sigma_min), num_steps, dtype=torch.float64)
    return _append_zero(log_sigmas.exp())


def loglinear_snr_sigmas(num_steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0) -> torch.Tensor:
    """Steps uniform in log-SNR lambda = -log(sigma) (Lu et al. 2022, DPM-Solver, sec. 3.3, "logSNR").

    In the sigma parametrisation this is the same grid as :func:`ve_geometric_sigmas`; it is kept as its own
    name because it is the schedule the exponential-integrator solvers are derived on.
    """
    return ve_geometric_sigmas(num_steps, sigma_min, sigma_max)


def check_sigmas(sigmas: torch.Tensor, *, name: str = "sigmas") -> torch.Tensor:
    """Validate a sampler's sigma array and return it as a 1-D float64 CPU tensor.

    It must be 1-D, hold at least 2 values, be finite, non-negative and strictly descending.
    """
    if not isinstance(sigmas, torch.Tensor):
        try:
            sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
        except (TypeError, ValueError) as err:
            raise ScheduleError(f"{name} must be a 1-D tensor of noise levels, got {type(sigmas).__name__}") from err
    if sigmas.ndim != 1:
        raise ScheduleError(f"{name} must be 1-D, got shape {tuple(sigmas.shape)}")
    if sigmas.numel() < 2:
        raise ScheduleError(f"{name} needs at least 2 values (a start and an end), got {sigmas.numel()}")
    s = sigmas.detach().to("cpu", torch.float64)
    if not torch.all(torch.isfinite(s)):
        raise ScheduleError(f"{name} must be finite; found {s[~torch.isfinite(s)].tolist()}")
    if torch.any(s < 0):
        raise ScheduleError(f"{name} must be non-negative; found {s[s < 0].tolist()}")
    steps = s[1:] - s[:-1]
    if torch.any(steps >= 0):
        bad = int(torch.nonzero(steps >= 0)[0])
        raise ScheduleError(
            f"{name} must be strictly descending; {name}[{bad}]={s[bad].item():.6g} is followed by "
            f"{s[bad + 1].item():.6g}. Schedules here return descending arrays: do not flip them."
        )
    return s
