"""RePaint: inpainting with an unconditional diffusion prior and resampling (Lugmayr et al., CVPR 2022).

Notation (EDM sigma units, ``x = x0 + sigma n``): ``m`` the mask (1 = known), ``y`` the observed image,
``sigma_y`` its noise, ``s_i`` the schedule, ``S`` the chosen sampler.

Algorithm 1 of the paper, step by step, in sigma units:

1. ``x ~ N(0, s_0^2 I)``.
2. Down step ``i -> i+1``: unknown pixels ``x_unknown = S(x, s_i -> s_{i+1})`` (any sampler, one step);
   known pixels are the observation noised to the new level, ``x_known = y + sqrt(s_{i+1}^2 - sigma_y^2) n``
   (their eq. 1 / eq. 8; the ``- sigma_y^2`` makes it exact for noisy observations), and
   ``x = m * x_known + (1 - m) * x_unknown``. Below ``sigma_y`` no replacement is made: the known pixels
   already hold ``y`` at level ``sigma_y``, and the rest of the run is exact posterior denoising of them.
3. Resampling (their Sec. 4.2, "jump_length" j, "jump_n_sample" r): at every j-th level, jump back up j
   levels with the forward process, ``x += sqrt(s_{i-j}^2 - s_i^2) n``, and redo the j down steps; r - 1
   times per jump point. This lets the unknown region harmonise with the known one.

Network evaluations: ``steps + (r - 1) * j * (number of jump points)`` sampler steps (paper: 250 steps,
j = r = 10, 2,410 NFE; here the defaults are far smaller, for CPUs).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from diffsight.errors import DiffsightError
from diffsight.models.denoiser import Denoiser
from diffsight.tasks.operators import MaskOperator
from diffsight.tasks.stepping import sampler_step, solver_sigmas

__all__ = ["repaint", "repaint_schedule"]


def repaint_schedule(steps: int, jump_length: int, jump_n_sample: int) -> list[int]:
    """The visiting order of schedule indices 0..steps (0 = noisiest, ``steps`` = sigma 0).

    Down moves are +1, jumps are -``jump_length``. Jump points are the indices ``jump_length, 2 jump_length,
    ...`` below ``steps`` (never the final clean level), each visited ``jump_n_sample`` times in all.
    """
    if jump_length < 1 or jump_n_sample < 1:
        raise DiffsightError(f"need jump_length >= 1 and jump_n_sample >= 1, got {jump_length}, {jump_n_sample}")
    left = {p: jump_n_sample - 1 for p in range(jump_length, steps, jump_length)}
    order, p = [0], 0
    while p < steps:
        p += 1
        order.append(p)
        if left.get(p, 0) > 0:
            left[p] -= 1
            p -= jump_length
            order.append(p)
    return order


def repaint(
    denoiser: Denoiser,
    operator: MaskOperator,
    y: torch.Tensor,
    *,
    steps: int = 40,
    jump_length: int = 4,
    jump_n_sample: int = 4,
    sampler: str = "ddpm",
    cond: Any = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One RePaint sample per observed image ``y`` (B, *event), known where ``operator.mask`` is 1."""
    if not isinstance(operator, MaskOperator):
        raise DiffsightError(f"RePaint fills masked pixels; it needs a MaskOperator, got {type(operator).__name__}")
    operator.A_T(y)  # shape check
    sigmas = solver_sigmas(denoiser, steps).tolist()
    m = operator.mask.to(y)
    sy = operator.noise_sigma

    def known(level: float) -> torch.Tensor:
        return y + math.sqrt(level**2 - sy**2) * torch.randn(
            y.shape, generator=generator, dtype=y.dtype, device=y.device
        )

    def merge(x: torch.Tensor, level: float) -> torch.Tensor:
        return m * known(level) + (1 - m) * x if level >= sy else x

    x = merge(sigmas[0] * torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device), sigmas[0])
    order = repaint_schedule(steps, jump_length, jump_n_sample)
    for p, q in zip(order[:-1], order[1:], strict=True):
        if q == p + 1:  # down one level with the sampler, then put the known pixels back
            x = sampler_step(sampler, denoiser, x, sigmas[p], sigmas[q], cond=cond, generator=generator)
            x = merge(x, sigmas[q])
        else:  # jump up: forward diffusion from s_p to s_q
            x = x + math.sqrt(sigmas[q] ** 2 - sigmas[p] ** 2) * torch.randn(
                x.shape, generator=generator, dtype=x.dtype, device=x.device
            )
    return x
