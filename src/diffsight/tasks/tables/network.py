"""The conditional denoiser of table rows and its training loss.

Conditioning follows CSDI (Tashiro et al. 2021, sec. 3.2 and 4): the network sees the noisy target cells, the
observed cells and the mask of which cells are observed, and it is trained by hiding a random part of the
observed cells (self-supervised masking). Written as an EDM backbone ``F(x_in, c_noise, cond)`` so that
:class:`~diffsight.models.EDMPrecond` turns it into a denoiser ``D(x, sigma, cond)`` and any sampler of
:mod:`diffsight.sampling` can draw rows or fill cells.

Notation (per row): ``x`` (D,) the encoded row, ``m`` (D,) 1 where a coordinate is given as a condition,
``y = m * x`` the given values. The network input is ``[c_in x_sigma * (1 - m), y, m]`` (3D,): noisy values only
where the row is to be generated, so the state of conditioned coordinates never matters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from diffsight.errors import DiffsightError, ShapeError
from diffsight.models.mlp import residual_blocks, run_residual_blocks

__all__ = ["RowCondition", "TableBackbone", "masked_edm_loss"]


@dataclass(frozen=True, eq=False)
class RowCondition:
    """The condition of a batch of rows: ``values`` (B, D) and ``mask`` (B, D), 1.0 where a value is given."""

    values: torch.Tensor
    mask: torch.Tensor
    prior_mean: torch.Tensor | None = None
    prior_std: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.values.shape != self.mask.shape or self.values.ndim != 2:
            raise ShapeError(
                f"condition values and mask must both be (B, D); got {tuple(self.values.shape)} and "
                f"{tuple(self.mask.shape)}"
            )
        if (self.prior_mean is None) != (self.prior_std is None):
            raise DiffsightError("give both prior_mean and prior_std, or neither")
        for t in (self.prior_mean, self.prior_std):
            if t is not None and t.shape != self.values.shape:
                raise ShapeError(f"the Gaussian prior is {tuple(t.shape)} for rows {tuple(self.values.shape)}")

    def repeat(self, k: int) -> RowCondition:
        """Each row repeated ``k`` times in place: (B, D) -> (B * k, D), row b at b*k .. b*k+k-1."""

        def rep(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.repeat_interleave(k, 0)

        return RowCondition(rep(self.values), rep(self.mask), rep(self.prior_mean), rep(self.prior_std))  # type: ignore[arg-type]


class TableBackbone(nn.Module):
    """Residual MLP ``F([x_in (1 - m), y, m], c_noise) -> (B, D)`` with a Fourier noise-level embedding.

    Args:
        dim: D, the width of an encoded row.
        hidden: width of the hidden layers.
        depth: number of residual blocks.
        emb_dim: width of the noise-level embedding.
        dropout: dropout inside each block (small tables overfit).
        prior: also take the Gaussian conditional mean ``g`` and standard deviation ``s`` of the hidden
            coordinates (``RowCondition.prior_mean``, ``.prior_std``) as inputs: ``[..., g (1 - m), s (1 - m)]``.
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 256,
        depth: int = 4,
        emb_dim: int = 64,
        dropout: float = 0.0,
        prior: bool = False,
    ) -> None:
        super().__init__()
        if dim < 1 or hidden < 1 or depth < 1 or emb_dim < 2 or not 0.0 <= dropout < 1.0:
            raise DiffsightError("TableBackbone needs dim, hidden, depth >= 1, emb_dim >= 2 and dropout in [0, 1)")
        self.config = {
            "dim": dim,
            "hidden": hidden,
            "depth": depth,
            "emb_dim": emb_dim,
            "dropout": dropout,
            "prior": prior,
        }
        generator = torch.Generator().manual_seed(0)  # fixed frequencies: part of the architecture
        self.register_buffer("freqs", torch.randn(emb_dim // 2, generator=generator) * 4.0)
        self.embed = nn.Sequential(nn.Linear(2 * (emb_dim // 2), emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.inp = nn.Linear((5 if prior else 3) * dim, hidden)
        self.blocks = residual_blocks(hidden, emb_dim, depth, dropout)
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, dim))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor, cond: Any = None) -> torch.Tensor:
        dim = self.config["dim"]
        if x_in.ndim != 2 or x_in.shape[1] != dim:
            raise ShapeError(f"TableBackbone expects rows shaped (B, {dim}), got {tuple(x_in.shape)}")
        if cond is None and not self.config["prior"]:  # nothing given: every coordinate is generated
            values, mask = torch.zeros_like(x_in), torch.zeros_like(x_in)
        elif isinstance(cond, RowCondition):
            if cond.values.shape != x_in.shape:
                raise ShapeError(f"the condition is {tuple(cond.values.shape)} for rows {tuple(x_in.shape)}")
            values, mask = cond.values.to(x_in.dtype), cond.mask.to(x_in.dtype)
        else:
            raise DiffsightError(f"cond must be a RowCondition or None, got {type(cond).__name__}")
        angles = 2 * math.pi * c_noise.to(x_in.dtype)[:, None] * self.freqs[None, :]  # (B, emb_dim/2)
        emb = nn.functional.silu(self.embed(torch.cat([angles.sin(), angles.cos()], dim=1)))  # (B, emb_dim)
        parts = [x_in * (1 - mask), values * mask, mask]
        if self.config["prior"]:
            if cond.prior_mean is None or cond.prior_std is None:
                raise DiffsightError("this network was built with the Gaussian prior: the condition must carry it")
            parts += [cond.prior_mean.to(x_in.dtype) * (1 - mask), cond.prior_std.to(x_in.dtype) * (1 - mask)]
        h = self.inp(torch.cat(parts, dim=1))  # (B, 3D or 5D) -> (B, hidden)
        return self.out(run_residual_blocks(self.blocks, h, emb))


def masked_edm_loss(
    denoiser: Any,
    x: torch.Tensor,
    target: torch.Tensor,
    sigma: torch.Tensor,
    noise: torch.Tensor,
    cond: RowCondition,
    sigma_data: float,
) -> torch.Tensor:
    """EDM's weighted x0 loss (Karras et al. 2022, eq. 8 with Table 1's lambda) over the target coordinates only.

    Args:
        denoiser: ``D(x, sigma, cond)``.
        x: clean rows (B, D).
        target: (B, D) 1.0 on the coordinates the loss scores (hidden observed cells), 0 elsewhere.
        sigma: (B,) noise levels; ``noise``: (B, D) standard normal draws.
        cond: what the denoiser is told.
        sigma_data: the data scale of the preconditioning.

    Returns the mean of ``lambda(sigma) * (D(x + sigma n) - x)^2`` over target coordinates.
    """
    weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2  # (B,)
    x0_hat = denoiser(x + sigma[:, None] * noise, sigma, cond)
    per_cell = weight[:, None] * (x0_hat - x).square() * target  # (B, D)
    return per_cell.sum() / target.sum().clamp_min(1.0)
