"""The Gaussian-mixture oracle: data ~ sum_k w_k N(mu_k, Sigma_k), exact denoiser, score and density.

At noise level sigma each component becomes N(mu_k, Sigma_k + sigma^2 I); the posterior responsibility is
``r_k(x) = w_k N_k(x) / sum_j w_j N_j(x)`` and, because E[x0 | x] mixes the per-component posterior means,

    D(x, sigma) = sum_k r_k(x) D_k(x, sigma),   score(x, sigma) = (D(x, sigma) - x) / sigma^2.

When a sample "commits" to a component is then analytic: in 1-D with two symmetric components at +-m and
unit variance the responsibilities split at abar m^2 = 1 - abar (DESIGN.md, "Oracles").
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from diffsight.errors import DiffsightError, ShapeError
from diffsight.oracles.gaussian import GaussianOracle, _flat, _sigma_b

__all__ = ["GaussianMixtureOracle"]


class GaussianMixtureOracle(nn.Module):
    """Exact denoiser, score and density of a Gaussian mixture.

    Args:
        weights: (K,) non-negative, normalised here.
        means: (K, *event).
        covs: (K, d, d), or (K,) isotropic variances, or a float shared by all components.
    """

    sigma_min = 0.0
    sigma_max = math.inf

    def __init__(self, weights: torch.Tensor, means: torch.Tensor, covs: torch.Tensor | float = 1.0) -> None:
        super().__init__()
        weights = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
        means = torch.as_tensor(means, dtype=torch.float64)
        k = weights.numel()
        if means.shape[0] != k:
            raise ShapeError(f"means must hold one row per weight ({k}), got shape {tuple(means.shape)}")
        if torch.any(weights < 0) or weights.sum() <= 0:
            raise DiffsightError("weights must be non-negative with a positive sum")
        self.event_shape = tuple(means.shape[1:])
        d = means[0].numel()
        covs = torch.as_tensor(covs, dtype=torch.float64)
        if covs.ndim == 0:
            covs = covs.expand(k)
        if covs.ndim == 1:
            covs = covs[:, None, None] * torch.eye(d, dtype=torch.float64)
        if covs.shape != (k, d, d):
            raise ShapeError(f"covs must be (K, d, d) = ({k}, {d}, {d}), (K,) or a float; got {tuple(covs.shape)}")
        self.register_buffer("log_weights", (weights / weights.sum()).log())
        self.components = nn.ModuleList(GaussianOracle(means[i].reshape(d), covs[i]) for i in range(k))

    @property
    def dim(self) -> int:
        return self.components[0].dim

    def responsibilities(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """Posterior component probabilities r_k(x) at noise level sigma, shape (B, K)."""
        flat = _flat(x, self.dim)
        logits = torch.stack([c.log_prob(flat, sigma) for c in self.components], 1)  # (B, K)
        return torch.softmax(logits + self.log_weights.to(x.dtype), dim=1)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, cond: Any = None) -> torch.Tensor:
        flat = _flat(x, self.dim)
        r = self.responsibilities(flat, sigma)  # (B, K)
        means = torch.stack([c(flat, sigma) for c in self.components], 1)  # (B, K, d)
        return (r[..., None] * means).sum(1).reshape(x.shape)

    def score(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        s2 = _sigma_b(sigma, x).reshape((-1,) + (1,) * (x.ndim - 1)) ** 2
        return (self(x, sigma) - x) / s2

    def log_prob(self, x: torch.Tensor, sigma: torch.Tensor | float = 0.0) -> torch.Tensor:
        flat = _flat(x, self.dim)
        logits = torch.stack([c.log_prob(flat, sigma) for c in self.components], 1)
        return torch.logsumexp(logits + self.log_weights.to(x.dtype), dim=1)

    def sample(
        self,
        n: int,
        sigma: float = 0.0,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        return_components: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """n draws, shape (n, *event); with ``return_components`` also the component index of each."""
        comp = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        out = torch.empty((n, self.dim), dtype=torch.float64, device=self.log_weights.device)
        for k, c in enumerate(self.components):
            idx = torch.nonzero(comp == k).flatten()
            if idx.numel():
                out[idx] = c.sample(idx.numel(), sigma, generator=generator, dtype=torch.float64)
        x = out.reshape(n, *self.event_shape).to(dtype)
        return (x, comp) if return_components else x
