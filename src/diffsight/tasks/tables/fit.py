"""Training of the conditional table denoiser by self-supervised masking (CSDI, Tashiro et al. 2021, Alg. 1).

Each step:

1. draw ``B`` rows (with replacement) and their observed-cell mask ``o`` (B, n_columns);
2. draw a hiding rate ``r ~ U(0, 1)`` per row (``r = 1`` with probability ``uncond_prob``) and hide each observed
   cell with probability ``r``: targets ``t = o * h``, conditions ``g = o * (1 - h)``;
3. draw ``ln sigma ~ N(p_mean, p_std^2)`` and noise ``n``; the loss is EDM's weighted x0 error on the target
   coordinates only (:func:`~diffsight.tasks.tables.network.masked_edm_loss`), given ``g * (x + j)`` and ``g``,
   where ``j ~ N(0, cond_noise^2)`` is a jitter that keeps a small table's rows from being memorised.

Cells missing from the data are never targets and never conditions. All randomness comes from one generator.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from diffsight.models.precond import EDMPrecond
from diffsight.tasks.tables.config import TableDiffusionConfig
from diffsight.tasks.tables.network import RowCondition, TableBackbone, masked_edm_loss
from diffsight.training.ema import EMA
from diffsight.training.loss import edm_sigmas

__all__ = ["ProgressFn", "build_denoiser", "train_denoiser"]

ProgressFn = Callable[[int, int, float], None]
"""``progress(step, total_steps, loss)``, called after every optimizer step."""


def build_denoiser(dim: int, config: TableDiffusionConfig) -> EDMPrecond:
    """The EDM-preconditioned table denoiser ``D(x, sigma, RowCondition)``, untrained."""
    backbone = TableBackbone(dim, hidden=config.hidden, depth=config.depth, dropout=config.dropout)
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
    progress: ProgressFn | None = None,
) -> tuple[EDMPrecond, list[float]]:
    """Train a denoiser on encoded rows.

    Args:
        values: (N, D) encoded rows (anything where not observed).
        observed: (N, n_columns) which cells may serve as conditions or targets.
        coord_column: (D,) the column of each coordinate.
        config: settings; ``config.seed`` fixes the initial weights, the batches, masks and noise.
        progress: called after every step.

    Returns the EMA denoiser in eval mode with gradients off (it is for sampling), and the loss of every step.
    """
    torch.manual_seed(config.seed)  # initial weights
    generator = torch.Generator().manual_seed(config.seed + 1)
    x_all = torch.as_tensor(values, dtype=torch.float32)
    obs_all = torch.as_tensor(observed, dtype=torch.bool)
    coords = torch.as_tensor(coord_column, dtype=torch.long)
    n, dim = x_all.shape
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
        cond = RowCondition((x + jitter) * given, given)
        loss = masked_edm_loss(denoiser, x * (given + target), target, sigma, noise, cond, config.sigma_data)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        ema.update(denoiser, step)
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step + 1, config.steps, losses[-1])
    return ema.model.eval().requires_grad_(False), losses
