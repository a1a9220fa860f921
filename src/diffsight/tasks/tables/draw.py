"""Draw encoded rows from the table denoiser, conditioned on given cells, with any diffsight sampler.

Two ways to condition, both wrapping the same denoiser and an unmodified sampler (STYLE.md, principle 8):

- ``"conditional"`` (default; CSDI, Tashiro et al. 2021, eq. 6): the given cells and their mask go to the
  network as ``RowCondition``; the sampler integrates only what the network generates.
- ``"repaint"`` (replacement; Lugmayr et al. 2022, eq. 8-9, without resampling): the network gets no condition;
  before every evaluation at level sigma the given coordinates of the state are replaced by ``y + sigma * n``
  (a fresh forward-noised copy of the known values), and the estimate of those coordinates by ``y``. It needs a
  network that can draw whole rows (trained with ``uncond_prob > 0``) and is measured against the conditional
  way in benchmarks/tables.py.

With a Gaussian prior (``config.linear_prior != "none"``), the network also gets each row's Gaussian
conditional mean ``g`` and standard deviation ``s`` (given the conditioned cells; for ``"repaint"``, given
nothing, since the network is told nothing). With ``"residual"`` the sampler integrates the standardised
residual ``r`` and a draw is ``x = g + s r``; RePaint's known values enter in the same coordinates.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from diffsight.errors import DiffsightError, unknown_name
from diffsight.sampling import get_sampler, karras_sigmas
from diffsight.tasks.tables.config import TableDiffusionConfig
from diffsight.tasks.tables.gaussian import GaussianPrior
from diffsight.tasks.tables.network import RowCondition

__all__ = ["ConditionMethod", "draw_rows"]

ConditionMethod = Literal["conditional", "repaint"]
_METHODS = ("conditional", "repaint")
_CHUNK = 16384  # rows per sampler call: bounds memory on big tables


class _Replacement(torch.nn.Module):
    """``D'(x, sigma) = m y + (1 - m) D(m (y + sigma n) + (1 - m) x, sigma)``: RePaint's replacement as a denoiser."""

    def __init__(
        self, denoiser: Any, cond: RowCondition, generator: torch.Generator, net_cond: RowCondition | None = None
    ) -> None:
        super().__init__()
        self.denoiser, self.cond, self.generator, self.net_cond = denoiser, cond, generator, net_cond
        self.sigma_min, self.sigma_max = denoiser.sigma_min, denoiser.sigma_max

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: Any = None) -> torch.Tensor:
        y, m = self.cond.values.to(x.dtype), self.cond.mask.to(x.dtype)
        noise = torch.randn(x.shape, generator=self.generator, dtype=x.dtype)
        x_known = y + sigma.reshape(-1, 1) * noise  # (B, D)
        x0 = self.denoiser(m * x_known + (1 - m) * x, sigma, self.net_cond)
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
    prior: GaussianPrior | None = None,
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
        prior: the fitted Gaussian, required unless ``config.linear_prior == "none"``.

    Returns (N, K, D) float64 samples; given coordinates equal ``values``.
    """
    if method not in _METHODS:
        raise unknown_name("conditioning method", str(method), list(_METHODS))
    values = np.asarray(values, dtype=np.float64)
    given = np.asarray(given, dtype=bool)
    if values.shape != given.shape or values.ndim != 2:
        raise DiffsightError(f"values and given must both be (N, D), got {values.shape} and {given.shape}")
    use_prior = config.linear_prior != "none"
    if use_prior and prior is None:
        raise DiffsightError(f"linear_prior={config.linear_prior!r} needs the fitted Gaussian prior")
    residual = config.linear_prior == "residual"
    sampler = get_sampler(config.sampler)
    sigmas = karras_sigmas(config.sampling_steps, config.sigma_min, config.sigma_max).to(torch.float32)
    n, dim = values.shape
    out = np.empty((n, k, dim), dtype=np.float64)
    rows_per_chunk = max(1, _CHUNK // k)
    for start in range(0, n, rows_per_chunk):
        stop = min(n, start + rows_per_chunk)
        m = torch.as_tensor(given[start:stop], dtype=torch.float32)
        y = torch.as_tensor(values[start:stop], dtype=torch.float32) * m
        told = m if method == "conditional" else torch.zeros_like(m)  # what the network is told
        g, s = prior.conditional(y, told) if use_prior else (torch.zeros_like(y), torch.ones_like(y))  # type: ignore[union-attr]
        net = RowCondition(y, told, g, s) if use_prior else (RowCondition(y, m) if method == "conditional" else None)
        x = torch.randn((stop - start) * k, dim, generator=generator) * config.sigma_max
        if method == "conditional":
            z = sampler(denoiser, x, sigmas, cond=net.repeat(k), generator=generator)  # type: ignore[union-attr]
        else:
            known = RowCondition((y - g) / s * m if residual else y, m)  # the known values in the sampled space
            rep = _Replacement(denoiser, known.repeat(k), generator, None if net is None else net.repeat(k))
            z = sampler(rep, x, sigmas, generator=generator)
        z = z.detach().reshape(stop - start, k, dim)  # (rows * K, D) -> (rows, K, D)
        if residual:
            z = g[:, None, :] + s[:, None, :] * z
        z = z.double().numpy()
        out[start:stop] = np.where(given[start:stop, None, :], values[start:stop, None, :], z)
    return out
