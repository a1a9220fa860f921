"""Discrete variance-preserving (DDPM) schedules and their map between timesteps and noise levels.

A VP model trained on a discrete schedule sees ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``. In the sigma
parametrisation of Karras et al. (2022) this is ``x = x_t / sqrt(abar_t) = x0 + sigma_t eps`` with
``sigma_t = sqrt((1 - abar_t) / abar_t)`` (EDM, Table 1, "VP"). This module lives beside the networks
because the adapters in :mod:`diffsight.models.discrete` need the timestep <-> sigma map; the sampling
layer re-exports it with the other schedules.

Notation: ``betas`` per-step variances beta_t (Ho et al. 2020, eq. 2), t = 0..T-1; ``abar_t`` =
prod_{s<=t}(1 - beta_s); ``t`` a discrete training timestep (0 = least noise), possibly fractional.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import torch

from diffsight.errors import ScheduleError, unknown_name

__all__ = [
    "BetaSchedule",
    "DiscreteVPSchedule",
    "TimestepSpacing",
    "betas_cosine",
    "betas_linear",
    "betas_scaled_linear",
    "make_betas",
]

BetaSchedule = Literal["linear", "scaled_linear", "cosine"]
TimestepSpacing = Literal["leading", "linspace", "trailing"]


def _append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def betas_linear(num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Linear betas of Ho et al. (2020), sec. 4: beta_t from ``beta_start`` to ``beta_end``."""
    _check_betas_range(num_train_timesteps, beta_start, beta_end)
    return torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)


def betas_scaled_linear(
    num_train_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012
) -> torch.Tensor:
    """Betas linear in sqrt(beta) (the latent-diffusion / Stable Diffusion schedule, Rombach et al. 2022)."""
    _check_betas_range(num_train_timesteps, beta_start, beta_end)
    return torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64) ** 2


def betas_cosine(num_train_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Cosine schedule of Nichol & Dhariwal (2021), eq. 17: abar(t) = cos^2(((t/T + s)/(1 + s)) pi/2).

    beta_t = 1 - abar(t+1)/abar(t), clipped at ``max_beta`` (their sec. 3.2) so the last step stays finite.
    """
    if not isinstance(num_train_timesteps, int) or num_train_timesteps < 1:
        raise ScheduleError(f"num_train_timesteps must be a positive integer, got {num_train_timesteps!r}")
    if not 0 < max_beta < 1:
        raise ScheduleError(f"max_beta must lie in (0, 1), got {max_beta}")

    def abar(u: torch.Tensor) -> torch.Tensor:
        return torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    u = torch.arange(num_train_timesteps + 1, dtype=torch.float64) / num_train_timesteps
    betas = 1 - abar(u[1:]) / abar(u[:-1])
    return betas.clamp(max=max_beta)


def _check_betas_range(num_train_timesteps: int, beta_start: float, beta_end: float) -> None:
    if not isinstance(num_train_timesteps, int) or num_train_timesteps < 1:
        raise ScheduleError(f"num_train_timesteps must be a positive integer, got {num_train_timesteps!r}")
    if not 0 < beta_start <= beta_end < 1:
        raise ScheduleError(f"need 0 < beta_start <= beta_end < 1, got {beta_start} and {beta_end}")


_BETA_FUNCTIONS = {"linear": betas_linear, "scaled_linear": betas_scaled_linear}


def make_betas(
    schedule: str, num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> torch.Tensor:
    """Betas by name: ``linear``, ``scaled_linear`` or ``cosine`` (diffusers calls it ``squaredcos_cap_v2``)."""
    if schedule in ("cosine", "squaredcos_cap_v2"):
        return betas_cosine(num_train_timesteps)
    if schedule not in _BETA_FUNCTIONS:
        raise unknown_name("beta schedule", schedule, [*_BETA_FUNCTIONS, "cosine", "squaredcos_cap_v2"])
    return _BETA_FUNCTIONS[schedule](num_train_timesteps, beta_start, beta_end)


@dataclass(frozen=True, eq=False)
class DiscreteVPSchedule:
    """A discrete DDPM schedule seen as noise levels: the map between timesteps t and sigma.

    ``sigma_t = sqrt((1 - abar_t) / abar_t)`` rises with t (Karras et al. 2022, Table 1, "VP"). Fractional
    timesteps interpolate linearly in log-sigma, so ``sigma_to_t(t_to_sigma(t)) == t`` for every t in
    [0, T-1] and the network can be asked about any sigma between ``sigma_min`` and ``sigma_max``.
    """

    betas: torch.Tensor

    def __post_init__(self) -> None:
        betas = torch.as_tensor(self.betas, dtype=torch.float64).flatten()
        if betas.numel() < 2 or not torch.all((betas > 0) & (betas < 1)):
            raise ScheduleError("betas must hold at least 2 values, each in (0, 1)")
        object.__setattr__(self, "betas", betas)

    @classmethod
    def from_name(
        cls, schedule: str = "linear", num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
    ) -> DiscreteVPSchedule:
        return cls(make_betas(schedule, num_train_timesteps, beta_start, beta_end))

    @property
    def num_train_timesteps(self) -> int:
        return int(self.betas.numel())

    @cached_property
    def alphas_cumprod(self) -> torch.Tensor:
        """abar_t, t = 0..T-1."""
        return torch.cumprod(1 - self.betas, dim=0)

    @cached_property
    def train_sigmas(self) -> torch.Tensor:
        """sigma_t for every training timestep, ascending in t."""
        abar = self.alphas_cumprod
        return ((1 - abar) / abar).sqrt()

    @cached_property
    def log_sigmas(self) -> torch.Tensor:
        """log sigma_t, ascending in t (computed once: the sigma <-> t map reads it on every network call)."""
        return self.train_sigmas.log()

    @property
    def sigma_min(self) -> float:
        return float(self.train_sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.train_sigmas[-1])

    def t_to_sigma(self, t: torch.Tensor | float) -> torch.Tensor:
        """sigma at (possibly fractional) timesteps t in [0, T-1], log-linear between integers."""
        t = torch.as_tensor(t, dtype=torch.float64)
        if torch.any((t < 0) | (t > self.num_train_timesteps - 1)):
            raise ScheduleError(f"timesteps must lie in [0, {self.num_train_timesteps - 1}]")
        log_sigmas = self.log_sigmas
        low = t.floor().long().clamp(max=self.num_train_timesteps - 2)
        w = t - low
        return ((1 - w) * log_sigmas[low] + w * log_sigmas[low + 1]).exp()

    def sigma_to_t(self, sigma: torch.Tensor | float) -> torch.Tensor:
        """Fractional timestep of each sigma (inverse of :meth:`t_to_sigma`), clamped to [0, T-1]."""
        sigma = torch.as_tensor(sigma, dtype=torch.float64)
        log_sigmas = self.log_sigmas
        log_sigma = sigma.clamp(min=torch.finfo(torch.float64).tiny).log()
        idx = torch.searchsorted(log_sigmas, log_sigma.reshape(-1)).reshape(log_sigma.shape)
        high = idx.clamp(1, self.num_train_timesteps - 1)
        low = high - 1
        w = (log_sigma - log_sigmas[low]) / (log_sigmas[high] - log_sigmas[low])
        return (low + w).clamp(0, self.num_train_timesteps - 1)

    def timesteps(self, num_steps: int, spacing: TimestepSpacing = "leading", steps_offset: int = 0) -> torch.Tensor:
        """Descending integer timesteps of an N-step sampler, as the DDPM/DDIM papers and diffusers space them.

        ``leading``: t = i * (T // N) + offset (DDIM, Song et al. 2021, sec. 4.2); ``linspace``: N points
        rounded from [0, T-1]; ``trailing``: round(T - i*T/N) - 1 (Lin et al. 2024, Table 2).
        """
        T = self.num_train_timesteps
        if not isinstance(num_steps, int) or not 1 <= num_steps <= T:
            raise ScheduleError(f"num_steps must be an integer in [1, {T}], got {num_steps!r}")
        if spacing == "leading":
            ts = torch.arange(num_steps, dtype=torch.float64) * (T // num_steps) + steps_offset
        elif spacing == "linspace":
            # i * (T-1)/(N-1), the last point exactly T-1: numpy.linspace's arithmetic, which diffusers rounds.
            # (torch.linspace fills its upper half from the end, so e.g. N=27 puts 499.5 on the other side.)
            ts = torch.arange(num_steps, dtype=torch.float64) * ((T - 1) / max(num_steps - 1, 1))
            ts[-1] = T - 1 if num_steps > 1 else 0
            ts = ts.round()
        elif spacing == "trailing":
            # T + i * delta with delta = (T - T/N) - T: numpy.arange(T, 0, -T/N)'s arithmetic, which diffusers
            # rounds (delta differs from -T/N in the last bits; N=48 would otherwise round 937.5 the other way).
            delta = (T - T / num_steps) - T
            ts = (T + torch.arange(num_steps, dtype=torch.float64) * delta).round() - 1
            ts = ts.flip(0)
        else:
            raise unknown_name("timestep spacing", spacing, ["leading", "linspace", "trailing"])
        if ts.max() > T - 1:
            raise ScheduleError(f"steps_offset={steps_offset} pushes timesteps past T-1={T - 1}")
        return ts.flip(0).long()

    def sigmas(self, num_steps: int, spacing: TimestepSpacing = "leading", steps_offset: int = 0) -> torch.Tensor:
        """The sampler's sigma array for :meth:`timesteps`, with the final 0 (abar = 1, "set_alpha_to_one")."""
        return _append_zero(self.train_sigmas[self.timesteps(num_steps, spacing, steps_offset)])
