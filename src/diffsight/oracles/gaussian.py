"""The Gaussian oracle: data ~ N(mu, Sigma), for which everything about diffusion is closed-form.

At noise level sigma the noisy data is ``x ~ N(mu, Sigma + sigma^2 I)``. With ``Sigma = U diag(lam) U^T``:

    D(x, sigma)     = mu + U diag(lam / (lam + sigma^2)) U^T (x - mu)        (posterior mean, Tweedie)
    score(x, sigma) = -U diag(1 / (lam + sigma^2)) U^T (x - mu)
    log p(x, sigma) = -1/2 [d log 2 pi + sum log(lam + sigma^2) + sum y^2 / (lam + sigma^2)],  y = U^T (x - mu)

and the probability-flow ODE ``dx/dsigma = (x - D) / sigma`` decouples in the eigenbasis into
``dy/dsigma = sigma y / (lam + sigma^2)``, solved by ``y(b) = y(a) sqrt((lam + b^2) / (lam + a^2))``.
These are the known answers against which samplers, likelihoods and explainers are checked.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from diffsight.errors import DiffsightError, ShapeError
from diffsight.models.parametrization import per_sample

__all__ = ["GaussianOracle"]


def _flat(x: torch.Tensor, dim: int) -> torch.Tensor:
    if x.ndim < 2 or x[0].numel() != dim:
        raise ShapeError(f"expected a batch (B, ...) with {dim} values per sample, got shape {tuple(x.shape)}")
    return x.reshape(x.shape[0], dim)  # (B, *event) -> (B, d)


def _sigma_b(sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
    return s.expand(x.shape[0]) if s.numel() == 1 else s


class GaussianOracle(nn.Module):
    """Exact denoiser, score, density and ODE flow of N(mean, cov).

    Args:
        mean: shape (d,) or the event shape; samples and inputs are shaped ``(B, *mean.shape)``.
        cov: (d, d) symmetric positive semi-definite, or None for the identity.
    """

    sigma_min = 0.0
    sigma_max = math.inf

    def __init__(self, mean: torch.Tensor, cov: torch.Tensor | None = None) -> None:
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float64)
        self.event_shape = tuple(mean.shape)
        d = mean.numel()
        cov = torch.eye(d, dtype=torch.float64) if cov is None else torch.as_tensor(cov, dtype=torch.float64)
        if cov.shape != (d, d):
            raise ShapeError(f"cov must have shape ({d}, {d}) to match mean, got {tuple(cov.shape)}")
        if not torch.allclose(cov, cov.T, atol=1e-10):
            raise DiffsightError("cov must be symmetric")
        lam, u = torch.linalg.eigh(cov)
        if lam.min() < -1e-9 * max(1.0, float(lam.abs().max())):
            raise DiffsightError(f"cov must be positive semi-definite; smallest eigenvalue {lam.min().item():.3g}")
        self.register_buffer("mean", mean.reshape(d))
        self.register_buffer("cov", cov)
        self.register_buffer("eigvals", lam.clamp_min(0))
        self.register_buffer("eigvecs", u)

    @property
    def dim(self) -> int:
        return self.mean.numel()

    def _basis(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        u = self.eigvecs.to(x.dtype)
        y = (_flat(x, self.dim) - self.mean.to(x.dtype)) @ u  # (B, d) coordinates in the eigenbasis
        return y, u, self.eigvals.to(x.dtype)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, cond: Any = None) -> torch.Tensor:
        """The optimal denoiser E[x0 | x] at noise level sigma (shape (B,) or scalar)."""
        y, u, lam = self._basis(x)
        s2 = per_sample(_sigma_b(sigma, x), y) ** 2  # (B, 1)
        out = self.mean.to(x.dtype) + (y * lam / (lam + s2)) @ u.T
        return out.reshape(x.shape)

    def score(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """grad_x log p(x, sigma)."""
        y, u, lam = self._basis(x)
        s2 = per_sample(_sigma_b(sigma, x), y) ** 2
        return (-(y / (lam + s2)) @ u.T).reshape(x.shape)

    def log_prob(self, x: torch.Tensor, sigma: torch.Tensor | float = 0.0) -> torch.Tensor:
        """log N(x; mean, cov + sigma^2 I), shape (B,)."""
        y, _, lam = self._basis(x)
        var = lam + per_sample(_sigma_b(sigma, x), y) ** 2  # (B, d)
        return -0.5 * (self.dim * math.log(2 * math.pi) + var.log().sum(1) + (y**2 / var).sum(1))

    def sample(
        self,
        n: int,
        sigma: float = 0.0,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """n draws from N(mean, cov + sigma^2 I), shape (n, *event_shape)."""
        z = torch.randn((n, self.dim), generator=generator, dtype=torch.float64, device=self.mean.device)
        x = self.mean + (z * (self.eigvals + sigma**2).sqrt()) @ self.eigvecs.T
        return x.reshape(n, *self.event_shape).to(dtype)

    def ode_solution(self, x: torch.Tensor, sigma_from: float, sigma_to: float) -> torch.Tensor:
        """Exact probability-flow ODE map from noise level ``sigma_from`` to ``sigma_to`` (either may be 0)."""
        y, u, lam = self._basis(x)
        ratio = ((lam + sigma_to**2) / (lam + sigma_from**2)).sqrt()
        return (self.mean.to(x.dtype) + (y * ratio) @ u.T).reshape(x.shape)
