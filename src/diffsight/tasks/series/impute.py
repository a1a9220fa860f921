"""Fill the missing values of a series (and forecast a gap at its end) with K posterior samples per window.

The series is cut into windows of the model's length L, half-overlapping (the last one aligned to the end);
each time step takes its samples from the window in which it lies farthest from the edges. Inside a window the
hidden values are drawn by any diffsight sampler from the conditional denoiser (CSDI, Tashiro et al. 2021,
sec. 4.1: sample x^ta ~ p(x^ta | x^co)), starting from N(0, sigma_max^2) noise; visible values are kept as they
are. The median of the samples is the point imputation and the (1-level)/2, (1+level)/2 quantiles the interval.

This is a job, not a differentiable function: it runs under ``torch.no_grad()``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from diffsight.errors import DiffsightError
from diffsight.sampling import get_sampler, karras_sigmas
from diffsight.tasks.series.data import SeriesData
from diffsight.tasks.series.features import conditioning, context_windows
from diffsight.tasks.series.fill import adjusted_line
from diffsight.tasks.series.model import SeriesModel

__all__ = ["SeriesImputation", "impute_series", "point_estimate", "sample_windows", "window_starts"]


@dataclass(frozen=True, eq=False)
class SeriesImputation:
    """Samples and summaries of a filled series of T' = T + forecast rows (original units).

    ``samples`` (S, T', K) (visible values copied in), ``median``/``lower``/``upper`` (T', K), ``observed``
    (T', K) bool, ``level`` the central coverage of [lower, upper]."""

    samples: np.ndarray
    median: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    observed: np.ndarray
    level: float
    columns: tuple[str, ...]
    forecast: int


def window_starts(length: int, window: int) -> np.ndarray:
    """Half-overlapping window offsets covering ``length`` steps, the last one ending at the end."""
    starts = list(range(0, length - window + 1, max(1, window // 2)))
    if starts[-1] != length - window:
        starts.append(length - window)
    return np.asarray(starts)


def sample_windows(
    model: SeriesModel,
    z: torch.Tensor,
    visible: torch.Tensor,
    starts: torch.Tensor,
    samples: int,
    generator: torch.Generator | None,
    batch_size: int = 2048,
    steps: int | None = None,
    context: int = 0,
    from_zero: bool = False,
) -> torch.Tensor:
    """``samples`` draws (S, B, K, L) of windows ``z`` (B, K, L + 2 context) (z-scores, ``context`` extra steps on each
    side, :func:`~.features.context_windows`) given the ``visible`` (B, K, L + 2 context) values; ``steps`` sampler
    steps (default: the model's ``sample_steps``). ``from_zero`` starts every draw at the noise's mode (0) instead
    of a random draw: with an ODE sampler this is one deterministic point estimate (for a Gaussian posterior
    N(m, v) the probability-flow ODE takes 0 to m (1 - sqrt(v / (v + sigma_max^2))), i.e. almost the mean)."""
    sampler = get_sampler(model.config.sampler)
    den = model.denoiser
    n_steps = steps if steps is not None else model.config.sample_steps
    sigmas = karras_sigmas(n_steps, sigma_min=den.sigma_min, sigma_max=den.sigma_max)
    scale = torch.from_numpy(model.local_scale).float()
    resid = torch.from_numpy(model.residual_scale).float()
    seasonal, drift = torch.from_numpy(model.seasonal).float(), torch.from_numpy(model.drift).float()
    cond, fill = conditioning(z, visible, scale, starts, model.config.period, context, seasonal, drift)
    z, visible = z[..., context : z.shape[-1] - context], visible[..., context : visible.shape[-1] - context]
    n_win = z.shape[0]
    rep_cond = cond.repeat(samples, 1, 1)  # (S*B, C, L): sample-major
    rep_fill = fill.repeat(samples, 1, 1)
    out = torch.empty(samples * n_win, *z.shape[1:])
    with torch.no_grad():
        for lo in range(0, out.shape[0], batch_size):
            hi = min(lo + batch_size, out.shape[0])
            shape = (hi - lo, *z.shape[1:])
            x = torch.zeros(shape) if from_zero else torch.randn(shape, generator=generator) * float(sigmas[0])
            u = sampler(den, x, sigmas.to(x.dtype), cond=rep_cond[lo:hi], generator=generator)
            out[lo:hi] = rep_fill[lo:hi] + u * resid[None, :, None]
    out = torch.where(visible.repeat(samples, 1, 1), z.repeat(samples, 1, 1), out)
    return out.reshape(samples, n_win, *z.shape[1:])


def _assemble(draws: np.ndarray, starts: np.ndarray, total: int, window: int) -> np.ndarray:
    """Window draws (S, W, K, L) -> series draws (S, T, K): each step t from the window where it is most central."""
    t = np.arange(total)
    inside = (t[None, :] >= starts[:, None]) & (t[None, :] < starts[:, None] + window)  # (W, T)
    margin = np.minimum(t[None, :] - starts[:, None], starts[:, None] + window - 1 - t[None, :])
    best = np.where(inside, margin, -1).argmax(0)  # (T,)
    picked = draws[:, best, :, t - starts[best]]  # (T, S, K): advanced indices first
    return np.transpose(picked, (1, 0, 2))


def point_estimate(model: SeriesModel, data: SeriesData) -> np.ndarray:
    """(T, K) one deterministic fill of ``data``'s missing values (observed values kept): the sampler run from the
    noise's mode (``sample_windows(..., from_zero=True)``), close to the posterior mean; no Monte-Carlo noise, one
    sampler run per window. Used to choose the training step on held-out values."""
    filled = model.denormalise(_draw_series(model, data.values, 1, None, from_zero=True)[0])
    return np.where(np.isnan(data.values), filled, data.values)


def _draw_series(
    model: SeriesModel, values: np.ndarray, samples: int, generator: torch.Generator | None, from_zero: bool = False
) -> np.ndarray:
    """(S, T, K) draws in z units of the series ``values`` (T, K) (NaN = hidden): half-overlapping windows with
    context, sampled, and put back together."""
    observed = torch.from_numpy(~np.isnan(values))
    z = torch.from_numpy(np.nan_to_num(model.normalise(values))).float()
    starts = torch.from_numpy(window_starts(values.shape[0], model.window))
    zx, ox = context_windows(z, observed, starts, model.window, model.context)  # (W, K, L + 2 context)
    draws = sample_windows(model, zx, ox, starts, samples, generator, context=model.context, from_zero=from_zero)
    return _assemble(draws.numpy(), starts.numpy(), values.shape[0], model.window)  # (S, W, K, L) -> (S, T, K)


def impute_series(
    model: SeriesModel,
    data: SeriesData,
    *,
    samples: int = 50,
    forecast: int = 0,
    level: float = 0.9,
    generator: torch.Generator | None = None,
) -> SeriesImputation:
    """Fill every missing value of ``data`` and forecast ``forecast`` steps past its end.

    Args:
        model: trained by :func:`~diffsight.tasks.series.fit_series` on series with the same columns.
        data: the series to fill (NaN = missing); it may be the training series or a new one.
        samples: posterior samples per window (K).
        forecast: steps to forecast after the last row (at most half the window).
        level: central coverage of the interval [lower, upper], in (0, 1).
    """
    if data.num_features != model.num_features:
        raise DiffsightError(
            f"the model was trained on {model.num_features} column(s) ({', '.join(model.columns)}); "
            f"the series has {data.num_features} ({', '.join(data.columns)})"
        )
    if samples < 1:
        raise DiffsightError(f"samples must be at least 1, got {samples}")
    if not 0 < level < 1:
        raise DiffsightError(f"level must be in (0, 1), got {level}")
    if forecast < 0 or forecast > model.window // 2:
        raise DiffsightError(
            f"forecast must be between 0 and half the model's window ({model.window // 2} steps), got {forecast}; "
            "train with a longer window to forecast further"
        )
    total = data.length + forecast
    if total < model.window:
        raise DiffsightError(
            f"the series has {data.length} rows; the model's window is {model.window}: give at least that many rows"
        )
    values = np.concatenate([data.values, np.full((forecast, data.num_features), np.nan)])  # (T', K)
    observed = ~np.isnan(values)
    z_samples = _draw_series(model, values, samples, generator)  # (S, T', K)
    if model.stack_weight != 1.0:  # keep w of the network's correction to the fill (see SeriesModel)
        fill = adjusted_line(model.normalise(values), model.seasonal, model.config.period, model.drift)  # (T', K)
        centre = np.median(z_samples, axis=0)
        z_samples = z_samples - (1.0 - model.stack_weight) * (centre - fill)[None]
    if model.spread != 1.0:  # held-out calibration of the width (see fit_series)
        centre = np.median(z_samples, axis=0, keepdims=True)
        z_samples = centre + model.spread * (z_samples - centre)
    x = model.denormalise(z_samples)
    x = np.where(observed[None], values[None], x)
    q = np.quantile(x, [(1 - level) / 2, 0.5, (1 + level) / 2], axis=0)
    return SeriesImputation(x, q[1], q[0], q[2], observed, level, model.columns, forecast)
