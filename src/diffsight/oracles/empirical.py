"""The empirical oracle: the optimal denoiser of a finite training set, which memorizes by construction.

For data uniform over points y_1..y_N the posterior mean at noise level sigma is a softmax-weighted average

    D(x, sigma) = sum_i w_i(x) y_i,   w = softmax_i(-|x - y_i|^2 / (2 sigma^2)),

so sampling it with any sampler ends on a training point: the positive control of memorization audits.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from diffsight.errors import ShapeError
from diffsight.oracles.gaussian import _flat, _sigma_b

__all__ = ["EmpiricalOracle"]


class EmpiricalOracle(nn.Module):
    """Exact denoiser and density of the uniform distribution over the rows of ``data`` (N, *event).

    ``chunk_size`` bounds memory: queries are processed that many at a time, so the distance matrix held at
    once is ``chunk_size x N`` whatever the batch size.
    """

    sigma_min = 0.0
    sigma_max = math.inf

    def __init__(self, data: torch.Tensor, chunk_size: int = 8192) -> None:
        super().__init__()
        data = torch.as_tensor(data)
        if data.ndim < 2 or data.shape[0] < 1:
            raise ShapeError(f"data must be shaped (N, ...) with N >= 1, got {tuple(data.shape)}")
        self.event_shape = tuple(data.shape[1:])
        self.register_buffer("data", data.reshape(data.shape[0], -1).to(torch.get_default_dtype()))
        self.chunk_size = int(chunk_size)

    @property
    def dim(self) -> int:
        return self.data.shape[1]

    def _blocks(self, flat: torch.Tensor, sigma: torch.Tensor | float) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(logits, query rows) per block of ``chunk_size`` queries; logits = -|x - y_i|^2 / (2 sigma^2)."""
        s2 = _sigma_b(sigma, flat).reshape(-1, 1) ** 2  # (B, 1)
        data = self.data.to(flat.dtype)
        return [
            (-torch.cdist(q, data).square() / (2 * s), q)  # (b, N)
            for q, s in zip(flat.split(self.chunk_size), s2.split(self.chunk_size), strict=True)
        ]

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, cond: Any = None) -> torch.Tensor:
        flat = _flat(x, self.dim)
        data = self.data.to(x.dtype)
        out = [torch.softmax(logits, 1) @ data for logits, _ in self._blocks(flat, sigma)]
        return torch.cat(out).reshape(x.shape)

    def score(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        s2 = _sigma_b(sigma, x).reshape((-1,) + (1,) * (x.ndim - 1)) ** 2
        return (self(x, sigma) - x) / s2

    def log_prob(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """log of (1/N) sum_i N(x; y_i, sigma^2 I), shape (B,); needs sigma > 0."""
        flat = _flat(x, self.dim)
        s = _sigma_b(sigma, flat)
        lse = torch.cat([torch.logsumexp(logits, 1) for logits, _ in self._blocks(flat, s)])
        return lse - math.log(self.data.shape[0]) - 0.5 * self.dim * torch.log(2 * math.pi * s**2)

    def nearest(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(distance, index) of the nearest training point to each sample."""
        flat = _flat(x, self.dim)
        data = self.data.to(flat.dtype)
        best = [torch.cdist(q, data).min(1) for q in flat.split(self.chunk_size)]
        return torch.cat([b.values for b in best]), torch.cat([b.indices for b in best])
