"""The sampler registry: one explicit dict from name to sampler function (STYLE.md, principle 6)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from diffsight.errors import unknown_name
from diffsight.models.denoiser import Denoiser
from diffsight.sampling.samplers import (
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
    sample_dpmpp_3m,
    sample_euler,
    sample_heun,
    sample_pc,
)

__all__ = ["DETERMINISTIC_SAMPLERS", "SAMPLERS", "get_sampler", "sample"]

SamplerFn = Callable[..., torch.Tensor]

SAMPLERS: dict[str, SamplerFn] = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "euler": sample_euler,
    "heun": sample_heun,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_3m": sample_dpmpp_3m,
    "pc": sample_pc,
}
"""Every sampler by its registry name."""

DETERMINISTIC_SAMPLERS: tuple[str, ...] = ("ddim", "euler", "heun", "dpmpp_2m", "dpmpp_3m")
"""Samplers that draw no noise with their default options (ODE solvers)."""


def get_sampler(name: str) -> SamplerFn:
    """The sampler function registered as ``name``; a clear error lists the names when it is unknown."""
    try:
        return SAMPLERS[name]
    except (KeyError, TypeError):
        raise unknown_name("sampler", str(name), list(SAMPLERS)) from None


def sample(name: str, denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """Run the sampler called ``name``: ``sample("heun", D, x, sigmas, generator=g)``."""
    return get_sampler(name)(denoiser, x, sigmas, **kwargs)
