"""A least-squares linear denoiser whose retraining without any subset of its data is closed-form.

At each noise level sigma_j of a fixed grid the denoiser is affine, ``D(x, sigma_j) = A_j x + b_j``. It is fitted
by ridge-regularised least squares on N training points y_i with R fixed (seeded) noise draws n_ijr per point and
level: with ``z_ijr = [y_i + sigma_j n_ijr, 1]`` (d + 1) and ``W_j = [A_j^T; b_j^T]`` ((d + 1) x d),

    W_j = argmin_W  sum_i m_i sum_r ||W^T z_ijr - y_i||^2 + ridge ||W||_F^2
        = (sum_i m_i G_ij + ridge I)^-1 (sum_i m_i C_ij),   G_ij = sum_r z z^T,  C_ij = sum_r z y_i^T,

where ``m_i`` is 1 for a kept example and 0 for a removed one. The per-example sufficient statistics (G_ij, C_ij)
are computed once, so retraining without any subset S only re-sums them: thousands of retrainings cost a few
batched (d + 1) x (d + 1) solves each. This is the exact ground truth for training-data attribution
(shared/research/xai.md, section 17, check 5; the linear datamodeling score of Park et al. 2023, "TRAK").

For Gaussian data the fit tends, as N R grows, to the optimal (Wiener) denoiser of
:class:`~diffsight.oracles.GaussianOracle`.

Between grid levels the parameters are interpolated linearly in log sigma; the denoiser is defined on
``[sigma_min, sigma_max]`` = the grid's range and raises outside it (a relative tolerance of 1e-6 is clamped, so
schedules built from those end points work).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from diffsight.errors import DiffsightError, ShapeError

__all__ = ["LinearDenoiser"]

_RANGE_TOL = 1e-6


class LinearDenoiser(nn.Module):
    """Per-sigma affine denoiser fitted by ridge least squares on ``data`` (N, *event).

    Args:
        data: the training points, shaped (N, *event).
        sigmas: the grid of noise levels (any order; stored ascending), all positive.
        draws: noise draws R per training point and level (ignored when ``noise`` is given).
        ridge: the ridge penalty on every entry of W_j (the bias included), > 0 keeps every solve well posed.
        noise: the standard-normal draws to fit on, shaped (N, J, R, *event) with J levels in *ascending* sigma
            order; drawn from ``generator`` when None. Passing ``noise[keep]`` and ``data[keep]`` refits from
            scratch on a subset with the same draws as :meth:`retrain_without`.
        generator: seeds the noise draws.

    Parameters ``weight`` (J, d, d) and ``bias`` (J, d) hold A_j and b_j; the training data, noise and sufficient
    statistics are buffers.
    """

    def __init__(
        self,
        data: torch.Tensor,
        sigmas: torch.Tensor | list[float],
        *,
        draws: int = 8,
        ridge: float = 1e-3,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        data = torch.as_tensor(data, dtype=torch.float64)
        if data.ndim < 2 or data.shape[0] < 1:
            raise ShapeError(f"data must be shaped (N, ...) with N >= 1, got {tuple(data.shape)}")
        grid = torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)
        if grid.numel() < 1 or not torch.all(torch.isfinite(grid)) or torch.any(grid <= 0):
            raise DiffsightError(f"sigmas must be finite and positive, got {grid.tolist()}")
        grid = grid.sort().values
        if grid.unique().numel() != grid.numel():
            raise DiffsightError("sigmas must be distinct grid levels")
        if ridge < 0:
            raise DiffsightError(f"ridge must be >= 0, got {ridge}")
        n, j = data.shape[0], grid.numel()
        self.event_shape = tuple(data.shape[1:])
        d = data[0].numel()
        flat = data.reshape(n, d)  # (N, d)
        if noise is None:
            if draws < 1:
                raise DiffsightError(f"draws must be >= 1, got {draws}")
            noise = torch.randn((n, j, draws, d), generator=generator, dtype=torch.float64)
        noise = torch.as_tensor(noise, dtype=torch.float64)
        if noise.shape[:2] != (n, j) or noise[0, 0, 0].numel() != d or noise.ndim < 4:
            raise ShapeError(
                f"noise must be shaped (N, J, R, *event) = ({n}, {j}, R, {self.event_shape}), got {tuple(noise.shape)}"
            )
        noise = noise.reshape(n, j, -1, d)  # (N, J, R, d)
        self.ridge = float(ridge)
        self.register_buffer("sigmas", grid)
        self.register_buffer("data", flat)
        self.register_buffer("noise", noise)
        z = self._inputs(flat, noise)  # (N, J, R, d + 1)
        self.register_buffer("gram", torch.einsum("njra,njrb->njab", z, z))  # (N, J, d+1, d+1)
        self.register_buffer("cross", torch.einsum("njra,nb->njab", z, flat))  # (N, J, d+1, d)
        weight, bias = self.solve(torch.ones(n, dtype=torch.float64))
        self.weight = nn.Parameter(weight[0])  # (J, d, d)
        self.bias = nn.Parameter(bias[0])  # (J, d)

    # -- the fit -----------------------------------------------------------------------------------------------
    def _inputs(self, flat: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        noisy = flat[:, None, None, :] + self.sigmas[None, :, None, None] * noise  # (N, J, R, d)
        return torch.cat([noisy, torch.ones_like(noisy[..., :1])], -1)  # (N, J, R, d + 1)

    @property
    def dim(self) -> int:
        return self.data.shape[1]

    @property
    def num_train(self) -> int:
        return self.data.shape[0]

    @property
    def sigma_min(self) -> float:  # type: ignore[override]
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:  # type: ignore[override]
        return float(self.sigmas[-1])

    def solve(self, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The exact refit on the examples ``keep`` marks (bool or 0/1 weights), shaped (N,) or (M, N).

        Returns ``(weight, bias)`` shaped (M, J, d, d) and (M, J, d): one retrained model per row of ``keep``.
        """
        keep = torch.as_tensor(keep, device=self.gram.device)
        if keep.ndim == 1:
            keep = keep[None]
        if keep.ndim != 2 or keep.shape[1] != self.num_train:
            raise ShapeError(f"keep must be shaped (N,) or (M, N) with N = {self.num_train}, got {tuple(keep.shape)}")
        m = keep.to(self.gram.dtype)
        d = self.dim
        g = torch.einsum("mn,njab->mjab", m, self.gram)  # (M, J, d+1, d+1)
        c = torch.einsum("mn,njab->mjab", m, self.cross)  # (M, J, d+1, d)
        g = g + self.ridge * torch.eye(d + 1, dtype=g.dtype, device=g.device)
        try:
            w = torch.linalg.solve(g, c)  # (M, J, d+1, d)
        except RuntimeError as err:  # singular normal equations
            raise DiffsightError(
                "the least-squares normal equations are singular: keep more examples or set ridge > 0"
            ) from err
        return w[..., :d, :].transpose(-1, -2).contiguous(), w[..., d, :].contiguous()

    def retrain_without(self, mask: torch.Tensor) -> LinearDenoiser:
        """A copy refitted exactly without the examples ``mask`` (bool, (N,)) marks; data and draws are shared."""
        mask = torch.as_tensor(mask, dtype=torch.bool, device=self.gram.device).reshape(-1)
        if mask.numel() != self.num_train:
            raise ShapeError(f"mask must hold one flag per training example ({self.num_train}), got {mask.numel()}")
        if bool(mask.all()) and self.ridge == 0:
            raise DiffsightError("cannot remove every training example without a ridge penalty")
        weight, bias = self.solve(~mask)
        new = LinearDenoiser.__new__(LinearDenoiser)
        nn.Module.__init__(new)
        new.event_shape, new.ridge = self.event_shape, self.ridge
        for name in ("sigmas", "data", "noise", "gram", "cross"):
            new.register_buffer(name, getattr(self, name))
        new.weight = nn.Parameter(weight[0])
        new.bias = nn.Parameter(bias[0])
        return new

    # -- the denoiser ------------------------------------------------------------------------------------------
    def _levels(self, sigma: torch.Tensor | float, batch: int, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(lower index, upper index, weight of the upper level) per sample for log-sigma interpolation."""
        s = torch.as_tensor(sigma, dtype=torch.float64, device=like.device).reshape(-1)
        s = s.expand(batch) if s.numel() == 1 else s
        if s.numel() != batch:
            raise ShapeError(f"sigma must be a float or shaped ({batch},), got {s.numel()} values")
        lo_s, hi_s = self.sigma_min, self.sigma_max
        if bool(torch.any(s < lo_s * (1 - _RANGE_TOL))) or bool(torch.any(s > hi_s * (1 + _RANGE_TOL))):
            raise DiffsightError(
                f"LinearDenoiser is fitted on sigma in [{lo_s:.4g}, {hi_s:.4g}]; got sigma in "
                f"[{float(s.min()):.4g}, {float(s.max()):.4g}]: sample with a schedule inside the grid"
            )
        log_s = s.clamp(lo_s, hi_s).log()
        log_grid = self.sigmas.log()
        hi = torch.searchsorted(log_grid, log_s).clamp(0, len(log_grid) - 1)  # (B,)
        lo = (hi - 1).clamp_min(0)
        span = log_grid[hi] - log_grid[lo]
        t = torch.where(span > 0, (log_s - log_grid[lo]) / torch.where(span > 0, span, 1.0), 1.0)  # (B,)
        return lo, hi, t

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, cond: Any = None) -> torch.Tensor:
        """``A(sigma) x + b(sigma)``, parameters interpolated in log sigma between grid levels."""
        if x.ndim < 2 or x[0].numel() != self.dim:
            raise ShapeError(f"expected a batch (B, ...) with {self.dim} values per sample, got {tuple(x.shape)}")
        flat = x.reshape(x.shape[0], self.dim)  # (B, d)
        lo, hi, t = self._levels(sigma, x.shape[0], x)
        t = t.to(x.dtype)[:, None]  # (B, 1)
        weight, bias = self.weight.to(x.dtype), self.bias.to(x.dtype)
        a = (1 - t[..., None]) * weight[lo] + t[..., None] * weight[hi]  # (B, d, d)
        b = (1 - t) * bias[lo] + t * bias[hi]  # (B, d)
        return (torch.einsum("bij,bj->bi", a, flat) + b).reshape(x.shape)

    def loss_per_example(self) -> torch.Tensor:
        """Each example's training loss ``sum_j sum_r ||A_j x_ijr + b_j - y_i||^2`` at the current parameters, (N,)."""
        z = self._inputs(self.data, self.noise)  # (N, J, R, d + 1)
        w = torch.cat([self.weight.transpose(-1, -2), self.bias[:, None, :]], 1)  # (J, d+1, d)
        resid = torch.einsum("njra,jab->njrb", z, w.to(z.dtype)) - self.data[:, None, None, :]
        return resid.square().sum((1, 2, 3))

    def extra_repr(self) -> str:
        return (
            f"N={self.num_train}, d={self.dim}, levels={self.sigmas.numel()}, draws={self.noise.shape[2]}, "
            f"ridge={self.ridge:g}, sigma in [{self.sigma_min:.3g}, {self.sigma_max:.3g}]"
        )
