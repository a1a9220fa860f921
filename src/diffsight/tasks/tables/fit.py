"""Training of the conditional table denoiser by self-supervised masking (CSDI, Tashiro et al. 2021, Alg. 1).

Each step:

1. draw ``B`` rows (with replacement) and their observed-cell mask ``o`` (B, n_columns);
2. draw a hiding rate ``r ~ U(0, 1)`` per row (``r = 1`` with probability ``uncond_prob``) and hide each observed
   cell with probability ``r``: targets ``t = o * h``, conditions ``g = o * (1 - h)``;
3. draw ``ln sigma ~ N(p_mean, p_std^2)`` and noise ``n``; the loss is EDM's weighted x0 error on the target
   coordinates only (:func:`~diffsight.tasks.tables.network.masked_edm_loss`), given ``g * (x + j)`` and ``g``,
   where ``j ~ N(0, cond_noise^2)`` is a jitter that keeps a small table's rows from being memorised.

Cells missing from the data are never targets and never conditions. All randomness comes from one generator.

With a linear prior (``config.linear_prior``, :mod:`~diffsight.tasks.tables.gaussian`), every row of the batch
also gets the Gaussian conditional mean ``g`` and standard deviation ``s`` of its coordinates given exactly the
cells ``g`` that the network is told (the same formula as at imputation time). With ``"residual"`` the
diffused quantity on the target coordinates is ``r = (x - g) / s`` instead of ``x``: it is ~N(0, 1) under the
Gaussian, so a network whose output is zero (its initialisation) is already EDM's exact denoiser for it
(``D(r_sigma) = r_sigma / (1 + sigma^2)`` at ``sigma_data = 1``), and training learns the non-linear,
non-Gaussian correction. With ``fold_priors``, the Gaussian for a row is the one fitted without the row's
fold (cross-fitting): a Gaussian fitted on the row itself would predict its hidden cells better than it can
predict a truly missing cell, and the network would learn to trust it too much.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from diffsight.errors import DiffsightError
from diffsight.models.precond import EDMPrecond
from diffsight.tasks.tables.config import TableDiffusionConfig
from diffsight.tasks.tables.gaussian import GaussianPrior
from diffsight.tasks.tables.network import RowCondition, TableBackbone, masked_edm_loss
from diffsight.training.ema import EMA
from diffsight.training.loss import edm_sigmas

__all__ = ["ProgressFn", "build_denoiser", "train_denoiser"]

ProgressFn = Callable[[int, int, float], None]
"""``progress(step, total_steps, loss)``, called after every optimizer step."""


def build_denoiser(dim: int, config: TableDiffusionConfig) -> EDMPrecond:
    """The EDM-preconditioned table denoiser ``D(x, sigma, RowCondition)``, untrained."""
    backbone = TableBackbone(
        dim, hidden=config.hidden, depth=config.depth, dropout=config.dropout, prior=config.linear_prior != "none"
    )
    return EDMPrecond(backbone, sigma_data=config.sigma_data, sigma_min=config.sigma_min, sigma_max=config.sigma_max)


def _lr_at(step: int, config: TableDiffusionConfig) -> float:
    warmup = max(1, config.steps // 50)
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, config.steps - warmup)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def train_denoiser(
    values: np.ndarray,
    observed: np.ndarray,
    coord_column: np.ndarray,
    config: TableDiffusionConfig,
    *,
    prior: GaussianPrior | None = None,
    fold_priors: list[GaussianPrior] | None = None,
    fold: np.ndarray | None = None,
    progress: ProgressFn | None = None,
) -> tuple[EDMPrecond, list[float]]:
    """Train a denoiser on encoded rows.

    Args:
        values: (N, D) encoded rows (anything where not observed).
        observed: (N, n_columns) which cells may serve as conditions or targets.
        coord_column: (D,) the column of each coordinate.
        config: settings; ``config.seed`` fixes the initial weights, the batches, masks and noise.
        prior: the fitted Gaussian, required unless ``config.linear_prior == "none"``.
        fold_priors, fold: Gaussians fitted without fold ``f``, and the fold (N,) of every row; when given,
            a training row's baseline comes from ``fold_priors[fold[row]]`` instead of ``prior``.
        progress: called after every step.

    Returns the EMA denoiser in eval mode with gradients off (it is for sampling), and the loss of every step.
    """
    if config.linear_prior != "none" and prior is None:
        raise DiffsightError(f"linear_prior={config.linear_prior!r} needs the fitted Gaussian prior")
    torch.manual_seed(config.seed)  # initial weights
    generator = torch.Generator().manual_seed(config.seed + 1)
    x_all = torch.as_tensor(values, dtype=torch.float32)
    obs_all = torch.as_tensor(observed, dtype=torch.bool)
    coords = torch.as_tensor(coord_column, dtype=torch.long)
    n, dim = x_all.shape
    fold_all = torch.as_tensor(fold, dtype=torch.long) if fold_priors else None
    denoiser = build_denoiser(dim, config)
    ema = EMA(denoiser, config.ema_decay)
    optimizer = torch.optim.AdamW(denoiser.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    losses: list[float] = []
    denoiser.train()
    for step in range(config.steps):
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, config)
        idx = torch.randint(n, (config.batch_size,), generator=generator)
        x, obs = x_all[idx], obs_all[idx]  # (B, D), (B, n_columns)
        rate = torch.rand(config.batch_size, generator=generator)
        rate = torch.where(torch.rand(config.batch_size, generator=generator) < config.uncond_prob, 1.0, rate)
        hide = torch.rand(obs.shape, generator=generator) < rate[:, None]
        target = (obs & hide)[:, coords].float()  # (B, n_columns) -> (B, D)
        given = (obs & ~hide)[:, coords].float()
        sigma = edm_sigmas(torch.randn(config.batch_size, generator=generator), config.p_mean, config.p_std)
        noise = torch.randn(x.shape, generator=generator)
        jitter = torch.randn(x.shape, generator=generator) * config.cond_noise if config.cond_noise else 0.0
        if prior is None or config.linear_prior == "none":
            cond = RowCondition((x + jitter) * given, given)
            clean = x * (given + target)
        else:
            g, s = _baseline(prior, fold_priors, None if fold_all is None else fold_all[idx], x, given)
            cond = RowCondition((x + jitter) * given, given, g, s)
            clean = (x - g) / s * target if config.linear_prior == "residual" else x * (given + target)
        loss = masked_edm_loss(denoiser, clean, target, sigma, noise, cond, config.sigma_data)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        ema.update(denoiser, step)
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step + 1, config.steps, losses[-1])
    return ema.model.eval().requires_grad_(False), losses


def _baseline(
    prior: GaussianPrior,
    fold_priors: list[GaussianPrior] | None,
    fold: torch.Tensor | None,
    x: torch.Tensor,
    given: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(g, s) (B, D): the Gaussian conditional given exactly the told cells, from each row's out-of-fold fit."""
    if not fold_priors or fold is None:
        return prior.conditional(x, given)
    g, s = torch.empty_like(x), torch.empty_like(x)
    for f, fitted in enumerate(fold_priors):
        rows = fold == f
        if rows.any():
            g[rows], s[rows] = fitted.conditional(x[rows], given[rows])
    return g, s
