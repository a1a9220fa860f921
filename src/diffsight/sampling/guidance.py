"""Classifier-free guidance as a denoiser wrapper (Ho & Salimans 2022, eq. 6).

``D_w(x | c) = D(x | null) + w * (D(x | c) - D(x | null))``: ``w = 1`` is the plain conditional model,
``w = 0`` the unconditional one. Both branches run in one batch of size 2B, so guidance costs one network
call per evaluation, not two. Because the combination is linear in x0 it equals the usual combination of
eps or score predictions.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from diffsight.errors import DiffsightError, ShapeError
from diffsight.models.denoiser import Denoiser

__all__ = ["ClassifierFreeGuidance"]


class ClassifierFreeGuidance(nn.Module):
    """Wrap a conditional denoiser so that it applies classifier-free guidance of scale ``scale``.

    ``cond`` at call time is a tensor with one condition per sample (shape ``(B, ...)``); ``null_cond`` is the
    condition that means "no condition" (for class labels, the null class index), either one value that is
    broadcast over the batch or a tensor shaped like ``cond``.
    """

    def __init__(self, denoiser: Denoiser, scale: float, null_cond: torch.Tensor | int) -> None:
        super().__init__()
        if not isinstance(scale, (int, float)) or scale != scale:
            raise DiffsightError(f"guidance scale must be a number, got {scale!r}")
        self.denoiser = denoiser
        self.scale = float(scale)
        self.null_cond = null_cond
        for attr in ("sigma_min", "sigma_max"):
            if hasattr(denoiser, attr):
                setattr(self, attr, getattr(denoiser, attr))

    def _null_like(self, cond: torch.Tensor) -> torch.Tensor:
        null = torch.as_tensor(self.null_cond, device=cond.device, dtype=cond.dtype)
        if null.shape == cond.shape:
            return null
        if null.numel() == 1 or null.shape == cond.shape[1:]:
            return null.expand_as(cond)
        raise ShapeError(f"null_cond of shape {tuple(null.shape)} does not fit cond of shape {tuple(cond.shape)}")

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: Any = None) -> torch.Tensor:
        if cond is None:
            raise DiffsightError("classifier-free guidance needs a condition: pass cond= to the sampler")
        cond = torch.as_tensor(cond, device=x.device)
        if cond.ndim == 0 or cond.shape[0] != x.shape[0]:
            raise ShapeError(f"cond must hold one condition per sample ({x.shape[0]}), got shape {tuple(cond.shape)}")
        if self.scale == 1.0:
            return self.denoiser(x, sigma, cond)
        both = self.denoiser(
            torch.cat([x, x]),  # (2B, *event)
            torch.cat([sigma, sigma]),  # (2B,)
            torch.cat([cond, self._null_like(cond)]),
        )
        x0_cond, x0_null = both.chunk(2)
        return x0_null + self.scale * (x0_cond - x0_null)
