"""The series denoiser: a small non-causal dilated 1-D convolution network over time, features as channels.

``SeriesNet`` is the raw backbone ``F(x_in, c_noise, cond)`` (x_in and the output (B, K, L), cond (B, C, L));
EDM preconditioning (Karras et al. 2022, Table 1; :class:`diffsight.models.EDMPrecond`) turns it into a denoiser,
and :class:`SeriesDenoiser` zeroes the output where a value is visible, so only hidden values are ever generated
(CSDI's conditional score model, Tashiro et al. 2021, eq. 6, with a convolutional instead of a transformer body).

Each residual block: GroupNorm -> SiLU -> dilated conv (k=3) -> FiLM by the noise embedding, plus a global
(time-averaged) context term -> SiLU -> 1x1 conv. Dilations cycle 1, 2, 4, 8, so 8 blocks see +-60 steps.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from diffsight.models.precond import EDMPrecond

__all__ = ["SeriesDenoiser", "SeriesNet"]


class _NoiseEmbedding(nn.Module):
    """Fourier features of c_noise = log(sigma)/4, then a 2-layer MLP."""

    def __init__(self, dim: int, freqs: int = 16) -> None:
        super().__init__()
        self.register_buffer("freqs", torch.exp(torch.linspace(0, math.log(100.0), freqs)), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * freqs, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        arg = c_noise[:, None] * self.freqs  # (B, freqs)
        return self.mlp(torch.cat([arg.sin(), arg.cos()], dim=1))


class _Block(nn.Module):
    def __init__(self, hidden: int, dilation: int, emb: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(8 if hidden % 8 == 0 else 1, hidden)
        self.conv = nn.Conv1d(hidden, hidden, 3, padding=dilation, dilation=dilation)
        self.film = nn.Linear(emb, 2 * hidden)
        self.context = nn.Linear(hidden, hidden)
        self.out = nn.Conv1d(hidden, hidden, 1)

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        y = self.conv(F.silu(self.norm(h)))  # (B, H, L)
        scale, shift = self.film(e)[:, :, None].chunk(2, dim=1)  # each (B, H, 1)
        y = y * (1 + scale) + shift + self.context(h.mean(-1))[:, :, None]
        return h + self.out(F.silu(y))


class SeriesNet(nn.Module):
    """Backbone ``F(x_in, c_noise, cond) -> out`` for windows of K features and any length L."""

    def __init__(self, num_features: int, cond_channels: int, hidden: int = 48, blocks: int = 8) -> None:
        super().__init__()
        self.num_features = num_features
        self.embed = _NoiseEmbedding(hidden)
        self.inp = nn.Conv1d(num_features + cond_channels, hidden, 1)
        self.blocks = nn.ModuleList(_Block(hidden, 2 ** (i % 4), hidden) for i in range(blocks))
        self.norm = nn.GroupNorm(8 if hidden % 8 == 0 else 1, hidden)
        self.head = nn.Conv1d(hidden, num_features, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor, cond: Any) -> torch.Tensor:
        hidden = 1 - cond[:, : self.num_features]  # (B, K, L): 1 where the value is generated
        h = self.inp(torch.cat([x_in * hidden, cond], dim=1))  # (B, H, L)
        e = self.embed(c_noise)
        for block in self.blocks:
            h = block(h, e)
        return self.head(F.silu(self.norm(h)))


class SeriesDenoiser(nn.Module):
    """``D(x, sigma, cond)``: EDM-preconditioned :class:`SeriesNet`, zero where ``cond``'s mask shows a value."""

    def __init__(self, net: SeriesNet, sigma_data: float, sigma_min: float, sigma_max: float) -> None:
        super().__init__()
        self.precond = EDMPrecond(net, sigma_data=sigma_data, sigma_min=sigma_min, sigma_max=sigma_max)
        self.num_features = net.num_features
        self.sigma_data = sigma_data
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: Any = None) -> torch.Tensor:
        return self.precond(x, sigma, cond) * (1 - cond[:, : self.num_features])
