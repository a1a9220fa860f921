"""Draw encoded rows from the table denoiser, conditioned on given cells, with any diffsight sampler.

Two ways to condition, both wrapping the same denoiser and an unmodified sampler (STYLE.md, principle 8):

- ``"conditional"`` (default; CSDI, Tashiro et al. 2021, eq. 6): the given cells and their mask go to the
  network as ``RowCondition``; the sampler integrates only what the network generates.
- ``"repaint"`` (replacement; Lugmayr et al. 2022, eq. 8-9, without resampling): the network gets no condition;
  before every evaluation at level sigma the given coordinates of the state are replaced by ``y + sigma * n``
  (a fresh forward-noised copy of the known values), and the estimate of those coordinates by ``y``. It needs a
  network that can draw whole rows (trained with ``uncond_prob > 0``) and is measured against the conditional
  way in benchmarks/tables.py.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from diffsight.errors import DiffsightError, unknown_name
from diffsight.sampling import get_sampler, karras_sigmas
from diffsight.tasks.tables.config import TableDiffusionConfig
from diffsight.tasks.tables.network import RowCondition

__all__ = ["ConditionMethod", "draw_rows"]

ConditionMethod = Literal["conditional", "repaint"]
_METHODS = ("conditional", "repaint")
_CHUNK = 16384  # rows per sampler call: bounds memory on big tables


class _Replacement(torch.nn.Module):
    """``D'(x, sigma) = m y + (1 - m) D(m (y + sigma n) + (1 - m) x, sigma)``: RePaint's replacement as a denoiser."""

    def __init__(self, denoiser: Any, cond: RowCondition, generator: torch.Generator) -> None:
        super().__init__()
        self.denoiser, self.cond, self.generator = denoiser, cond, generator
        self.sigma_min, self.sigma_max = denoiser.sigma_min, denoiser.sigma_max

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: Any = None) -> torch.Tensor:
        y, m = self.cond.values.to(x.dtype), self.cond.mask.to(x.dtype)
        noise = torch.randn(x.shape, generator=self.generator, dtype=x.dtype)
        x_known = y + sigma.reshape(-1, 1) * noise  # (B, D)
        x0 = self.denoiser(m * x_known + (1 - m) * x, sigma, None)
        return m * y + (1 - m) * x0


def draw_rows(
    denoiser: Any,
    values: np.ndarray,
    given: np.ndarray,
    k: int,
    config: TableDiffusionConfig,
    *,
    generator: torch.Generator,
    method: ConditionMethod = "conditional",
) -> np.ndarray:
    """K encoded samples of each row, the given coordinates held at their values.

    Args:
        denoiser: ``D(x, sigma, RowCondition)``.
        values: (N, D) encoded rows (given coordinates hold the known values).
        given: (N, D) boolean, which coordinates are known.
        k: samples per row.
        config: sampler, steps and sigma range.
        generator: the source of all noise.
        method: ``"conditional"`` or ``"repaint"`` (see the module docstring).

    Returns (N, K, D) float64 samples; given coordinates equal ``values``.
    """
    if method not in _METHODS:
        raise unknown_name("conditioning method", str(method), list(_METHODS))
    values = np.asarray(values, dtype=np.float64)
    given = np.asarray(given, dtype=bool)
    if values.shape != given.shape or values.ndim != 2:
        raise DiffsightError(f"values and given must both be (N, D), got {values.shape} and {given.shape}")
    sampler = get_sampler(config.sampler)
    sigmas = karras_sigmas(config.sampling_steps, config.sigma_min, config.sigma_max).to(torch.float32)
    n, dim = values.shape
    out = np.empty((n, k, dim), dtype=np.float64)
    rows_per_chunk = max(1, _CHUNK // k)
    for start in range(0, n, rows_per_chunk):
        stop = min(n, start + rows_per_chunk)
        m = torch.as_tensor(given[start:stop], dtype=torch.float32)
        y = torch.as_tensor(values[start:stop], dtype=torch.float32) * m
        cond = RowCondition(y, m).repeat(k)  # (rows * K, D)
        x = torch.randn((stop - start) * k, dim, generator=generator) * config.sigma_max
        if method == "conditional":
            z = sampler(denoiser, x, sigmas, cond=cond, generator=generator)
        else:
            z = sampler(_Replacement(denoiser, cond, generator), x, sigmas, generator=generator)
        z = z.detach().double().reshape(stop - start, k, dim).numpy()  # (rows * K, D) -> (rows, K, D)
        out[start:stop] = np.where(given[start:stop, None, :], values[start:stop, None, :], z)
    return out
