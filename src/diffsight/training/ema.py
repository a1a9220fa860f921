"""Exponential moving average of the weights (Polyak averaging), kept as a second copy of the network.

Decay warms up as ``min(decay, (1 + step) / (10 + step))`` so that early, fast-changing weights are not frozen
into the average (the schedule of diffusers' ``EMAModel`` with ``use_ema_warmup=False``; Tarvainen & Valpola
2017 for the warm-up idea). The copy is a full module, so sampling from the EMA needs no weight swapping.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """EMA of ``model``'s parameters in ``self.model`` (buffers are copied, not averaged)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Blend ``model``'s current weights in after optimizer step ``step`` (0-based)."""
        weight = 1.0 - self.decay_at(step)
        ema_params = list(self.model.parameters())
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, params, weight)
        for ema_buf, buf in zip(self.model.buffers(), model.buffers(), strict=True):
            ema_buf.copy_(buf)
