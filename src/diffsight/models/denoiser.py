"""The denoiser contract (DESIGN.md, contract 1): ``D(x, sigma, cond=None) -> x0_hat``.

``x`` is a batch ``(B, *event)`` at noise level ``sigma`` (shape ``(B,)``) in the sigma parametrisation
``x = x0 + sigma * eps``; the result is the estimate of x0, shaped like ``x``. Everything downstream
(samplers, losses, tasks, explainers) speaks only this contract. Raw networks become denoisers once, at the
edge: :class:`~diffsight.models.precond.EDMPrecond` or :class:`~diffsight.models.discrete.DiscreteVPDenoiser`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

__all__ = ["Denoiser"]


@runtime_checkable
class Denoiser(Protocol):
    """``D(x, sigma, cond=None) -> x0_hat``; ``sigma`` has shape ``(B,)``; the output is shaped like ``x``.

    Denoisers built by diffsight also carry ``sigma_min`` and ``sigma_max``: the range of noise levels they
    were trained on, which samplers' schedules should respect.
    """

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: Any = None) -> torch.Tensor: ...
