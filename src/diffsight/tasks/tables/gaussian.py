"""A multivariate Gaussian over encoded rows, fitted with missing cells, and its per-row conditionals.

The linear baseline the table denoiser corrects. In the quantile-normal coordinates every numeric column is
~N(0, 1), and near-linear tables (radius, perimeter and area of a cell nucleus; cholesterol fractions) are
close to jointly Gaussian there, so the best linear fill of a row's hidden coordinates ``m`` from its given
ones ``o`` is the Gaussian conditional (Anderson 2003, Theorem 2.5.1):

    E[x_m | x_o]   = mu_m + S_mo S_oo^-1 (x_o - mu_o),
    Cov[x_m | x_o] = S_mm - S_mo S_oo^-1 S_om.

Every row has its own mask, so the formula is evaluated for a batch at once with the padded system
``A = M S M + (I - M)`` (``M = diag(m)``, 1 on given coordinates): ``A`` is ``S_oo`` on the given block and
the identity elsewhere, so ``w = A^-1 M (x - mu)`` is ``S_oo^-1 (x_o - mu_o)`` padded with zeros, and
``mu + S w`` is the conditional mean on hidden coordinates and ``x`` itself on given ones; likewise
``S - S M A^-1 M S`` is the conditional covariance (zero on given rows and columns).

``mu`` and ``S`` are fitted by EM for a Gaussian with values missing at random (Dempster, Laird and Rubin
1977; Little and Rubin 2002, sec. 11.2.1): the E-step fills every row's missing coordinates with their
conditional mean and adds their conditional covariance, the M-step takes the mean and covariance of the
filled rows. ``S`` gets a ridge ``ridge * mean(diag S)`` on its diagonal (the +-1 one-hot coordinates of a
categorical column are collinear, and a small table leaves ``S`` noisy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from diffsight.errors import DiffsightError, ShapeError

__all__ = ["GaussianPrior", "gaussian_conditional"]

_MIN_VAR = 1e-6


def gaussian_conditional(
    mean: torch.Tensor, cov: torch.Tensor, values: torch.Tensor, given: torch.Tensor, *, full: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Conditional mean and covariance (or variance) of every row under N(mean, cov), given its own mask.

    Args:
        mean: (D,); cov: (D, D) symmetric positive definite.
        values: (B, D) rows (anything on coordinates that are not given).
        given: (B, D) 1.0 (or True) where a coordinate is given.
        full: return the (B, D, D) conditional covariances instead of their diagonals.

    Returns ``(cond_mean (B, D), cond_var (B, D) or cond_cov (B, D, D))`` in float64; on given coordinates the
    mean equals ``values`` and the variance is 0.
    """
    mean, cov = mean.double(), cov.double()
    values, m = values.double(), given.double()
    if values.ndim != 2 or values.shape != m.shape or values.shape[1] != mean.shape[0] or cov.shape[0] != mean.shape[0]:
        raise ShapeError(
            f"need mean (D,), cov (D, D), values and given (B, D); got {tuple(mean.shape)}, {tuple(cov.shape)}, "
            f"{tuple(values.shape)} and {tuple(m.shape)}"
        )
    a = m[:, :, None] * cov[None] * m[:, None, :] + torch.diag_embed(1.0 - m)  # (B, D, D): S_oo (+) I
    ms = m[:, :, None] * cov[None]  # (B, D, D): M S
    rhs = torch.cat([(m * (values - mean))[:, :, None], ms], dim=2)  # (B, D, 1 + D)
    sol = torch.linalg.solve(a, rhs)
    w, q = sol[:, :, 0], sol[:, :, 1:]  # (B, D), (B, D, D): A^-1 M (x - mu), A^-1 M S
    cond_mean = mean + w @ cov  # cov symmetric: (S w)^T = w^T S
    cond_mean = torch.where(m > 0, values, cond_mean)
    keep = (1.0 - m)[:, :, None] * (1.0 - m)[:, None, :]  # exact zeros on given rows and columns
    cond_cov = (cov[None] - (cov[None] * m[:, None, :]) @ q) * keep  # S - S M A^-1 M S
    if full:
        return cond_mean, 0.5 * (cond_cov + cond_cov.transpose(1, 2))
    return cond_mean, torch.diagonal(cond_cov, dim1=1, dim2=2).clamp_min(0.0)


@dataclass(frozen=True)
class GaussianPrior:
    """``N(mean, cov)`` over encoded rows: ``mean`` (D,), ``cov`` (D, D), float64 tensors."""

    mean: torch.Tensor
    cov: torch.Tensor

    @classmethod
    def fit(
        cls, values: np.ndarray, observed: np.ndarray, *, ridge: float = 0.01, iterations: int = 100, tol: float = 1e-6
    ) -> GaussianPrior:
        """EM fit on rows ``values`` (N, D) whose coordinates ``observed`` (N, D) are known.

        Stops after ``iterations`` rounds or when no entry of ``mean`` or ``cov`` moves by more than ``tol``.
        """
        x = torch.as_tensor(np.asarray(values, dtype=np.float64))
        o = torch.as_tensor(np.asarray(observed, dtype=bool)).double()
        if x.ndim != 2 or x.shape != o.shape:
            raise ShapeError(f"values and observed must both be (N, D), got {tuple(x.shape)} and {tuple(o.shape)}")
        if (o.sum(dim=0) < 2).any():
            raise DiffsightError("every coordinate needs at least 2 observed rows to fit the Gaussian prior")
        if ridge < 0:
            raise DiffsightError(f"the ridge of the Gaussian prior must be >= 0, got {ridge}")
        n, dim = x.shape
        mean = (x * o).sum(0) / o.sum(0)
        centred = (x - mean) * o
        cov = torch.diag((centred**2).sum(0) / o.sum(0))  # start: independent columns
        cov = cov + _ridge(cov, ridge)
        for _ in range(iterations):
            filled, cond_cov = gaussian_conditional(mean, cov, x, o, full=True)
            new_mean = filled.mean(0)
            d = filled - new_mean
            new_cov = (d.T @ d + cond_cov.sum(0)) / n
            new_cov = 0.5 * (new_cov + new_cov.T)
            new_cov = new_cov + _ridge(new_cov, ridge)
            moved = max(float((new_mean - mean).abs().max()), float((new_cov - cov).abs().max()))
            mean, cov = new_mean, new_cov
            if moved < tol:
                break
        return cls(mean, cov)

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def conditional(self, values: torch.Tensor, given: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(E[x | given], sqrt(Var[x | given]))`` per coordinate, (B, D) float32; the std is >= 1e-3."""
        cond_mean, cond_var = gaussian_conditional(self.mean, self.cov, values, given)
        return cond_mean.float(), cond_var.clamp_min(_MIN_VAR).sqrt().float()

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {"prior.mean": self.mean.contiguous(), "prior.cov": self.cov.contiguous()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> GaussianPrior:
        try:
            mean, cov = tensors["prior.mean"].double(), tensors["prior.cov"].double()
        except KeyError as err:
            raise DiffsightError(f"the weights lack the Gaussian prior ({err}); refit the model") from None
        if mean.ndim != 1 or cov.shape != (mean.shape[0], mean.shape[0]):
            raise DiffsightError(f"malformed Gaussian prior: mean {tuple(mean.shape)}, cov {tuple(cov.shape)}")
        return cls(mean, cov)


def _ridge(cov: torch.Tensor, ridge: float) -> torch.Tensor:
    return ridge * torch.diagonal(cov).mean() * torch.eye(cov.shape[0], dtype=cov.dtype)
