"""Train a conditional series denoiser on the observed values of one series (CSDI-style self-supervision).

Algorithm (Tashiro et al. 2021, Alg. 1, with EDM's loss and preconditioning, Karras et al. 2022, sec. 5):

1. Normalise each column to z-scores over its observed values; measure each column's *local scale* (the typical
   spread of a column inside one window, median over windows), so that trending columns are not squashed. Fit
   the fill's seasonal profile and drift per column (:mod:`~diffsight.tasks.series.fill`).
2. Repeat: draw B windows of length L at random offsets; pick conditioning values among the observed ones with a
   random pattern (:mod:`~diffsight.tasks.series.masks`); the targets are the other observed values.
3. The clean variable is the residual u = (z - fill) / residual_scale of the targets around the fill of the
   conditioning values (straight lines around the seasonal profile, with the drift beyond the ends; the fill
   also sees the observed values within ``context`` steps outside the window,
   none after it for the ``forecast`` pattern); ``residual_scale`` is each column's root-mean-square residual
   over a few training batches, so an untrained network already draws each column's typical deviation from the
   straight line and the network's errors are measured in each column's own units (sigma_data = 1); draw
   ln sigma ~ N(ln(sigma_data / 0.5) - 1.2, 1.2^2) and minimise ``lambda(sigma) * |D(u + sigma n; sigma, cond) - u|^2``
   over the targets only, lambda = (s^2 + sd^2)/(s sd)^2.
4. Every ``select_every`` steps, fill the held-out values (one deterministic run) and keep the weights with the
   smallest error (early stopping; step 0, the untrained network, is a candidate: it draws around the fill).
5. On the held-out values, fit the stack weight of the network's correction to the fill and the interval scale
   (:func:`_stack_and_spread`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from scipy import stats

from diffsight.errors import DiffsightError
from diffsight.tasks.series.data import SeriesData
from diffsight.tasks.series.features import conditioning, context_windows
from diffsight.tasks.series.fill import adjusted_line, fit_drift, fit_seasonal_profile, seasonal_values
from diffsight.tasks.series.impute import impute_series, point_estimate
from diffsight.tasks.series.masks import training_mask
from diffsight.tasks.series.model import MIN_WINDOW, SeriesConfig, SeriesModel, build_denoiser
from diffsight.tasks.series.stream import calibrate

__all__ = ["fit_series", "window_length"]

P_MEAN, P_STD = -1.2, 1.2  # EDM's log-normal training sigmas, for sigma_data = 0.5


def window_length(config: SeriesConfig, length: int) -> int:
    """The window used for a series of ``length`` steps; refuses series shorter than one minimal window."""
    if length < MIN_WINDOW:
        raise DiffsightError(f"the series has {length} rows; it needs at least {MIN_WINDOW} (one window) to learn from")
    return min(config.window, length)


def _local_scale(z: np.ndarray, observed: np.ndarray, length: int) -> np.ndarray:
    """Per column: median over half-overlapping windows of the spread of the observed values in the window."""
    spreads: list[list[float]] = [[] for _ in range(z.shape[1])]
    for s in range(0, z.shape[0] - length + 1, max(1, length // 2)):
        for k in range(z.shape[1]):
            vals = z[s : s + length, k][observed[s : s + length, k]]
            if vals.size >= 3:
                spreads[k].append(float(vals.std()))
    return np.array([max(np.median(s), 1e-3) if s else 1.0 for s in spreads])


def _check(data: SeriesData) -> None:
    counts = data.observed.sum(0)
    few = [c for c, n in zip(data.columns, counts, strict=True) if n < 3]
    if few:
        raise DiffsightError(f"column(s) {', '.join(few)} have fewer than 3 values; a model cannot learn from them")


def fit_series(
    data: SeriesData, config: SeriesConfig | None = None, progress: Callable[[int, float], None] | None = None
) -> SeriesModel:
    """Train a model on the observed values of ``data``; ``progress(step, loss)`` is called every 100 steps.

    Keeps ``config.holdout`` of the observed values out of training and scales the spread of the samples so that
    90% intervals cover 90% of them (``model.spread``); calibrates the streaming anomaly score on training
    windows (:func:`~.stream.calibrate`).
    """
    config = config or SeriesConfig()
    _check(data)
    length = window_length(config, data.length)
    held = _holdout(data.observed, config.holdout, torch.Generator().manual_seed(config.seed + 3))
    full = data
    if held is not None:
        data = SeriesData(np.where(held, np.nan, data.values), data.columns, data.time, data.time_name)
    observed_np = data.observed
    mean = np.array([np.nanmean(c) for c in data.values.T])
    std = np.array([np.nanstd(c) for c in data.values.T])
    std = np.where(std > 0, std, 1.0)
    z_np = (data.values - mean) / std
    local = _local_scale(z_np, observed_np, length)
    seasonal_np = fit_seasonal_profile(z_np, observed_np, config.period if config.seasonal_fill else None)
    seasonal = torch.from_numpy(seasonal_np).float()  # (K, 2)
    adjusted = z_np - seasonal_values(seasonal_np, config.period, data.length)  # (T, K) NaN where not observed
    drift_np = fit_drift(adjusted, observed_np) if config.drift_ends else np.zeros(data.num_features)
    drift = torch.from_numpy(drift_np).float()  # (K,)

    gen = torch.Generator().manual_seed(config.seed)
    z = torch.from_numpy(np.nan_to_num(z_np)).float()  # (T, K)
    observed = torch.from_numpy(observed_np)
    scale = torch.from_numpy(local).float()
    n_starts = data.length - length + 1
    context = length if config.context is None else config.context

    def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        starts = torch.randint(0, n_starts, (config.batch,), generator=gen)
        zx, ox = context_windows(z, observed, starts, length, context)  # (B, K, L + 2 context)
        zw, ow = zx[..., context : context + length], ox[..., context : context + length]  # (B, K, L)
        _, other = context_windows(z, observed, torch.randint(0, n_starts, (config.batch,), generator=gen), length, 0)
        cond_mask, forecasting = training_mask(ow, other, gen)
        target = ow & ~cond_mask
        visible = ox.clone()
        visible[..., context : context + length] = cond_mask
        visible[forecasting, :, context + length :] = False  # a forecast sees nothing after the window
        cond, fill = conditioning(zx, visible, scale, starts, config.period, context, seasonal, drift)
        u = torch.where(target, (zw - fill) / resid[None, :, None], torch.zeros_like(zw))
        return u, target.float(), cond, starts

    # per-column residual scale: root-mean-square of (z - fill) / local_scale over a few batches of targets
    resid = scale.clone()
    sq, n = torch.zeros(data.num_features), torch.zeros(data.num_features)
    for _ in range(10):
        u, target, _, _ = batch()
        sq, n = sq + u.square().sum((0, 2)), n + target.sum((0, 2))
    rms = (sq / n.clamp(min=1)).sqrt()
    fallback = float((sq.sum() / n.sum().clamp(min=1)).sqrt())  # columns without targets take the pooled value
    rms = torch.where(n > 0, rms, torch.full_like(rms, fallback)).clamp(min=1e-3)
    resid = scale * rms  # (K,) in z units
    sigma_data = 1.0
    with torch.random.fork_rng(devices=[]):  # initial weights from the seed, not from the global generator's state
        torch.manual_seed(config.seed)
        denoiser = build_denoiser(config, data.num_features, sigma_data)
    model = SeriesModel(
        config=config,
        denoiser=denoiser,
        columns=data.columns,
        mean=mean,
        std=std,
        local_scale=local,
        window=length,
        train_length=data.length,
        context=context,
        residual_scale=resid.double().numpy(),
        seasonal=seasonal_np,
        drift=drift_np,
    )
    select = held is not None and config.select_every > 0
    best_error, best_step, best_state = math.inf, 0, None
    denoiser.train()
    opt = torch.optim.AdamW(denoiser.parameters(), lr=config.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, config.train_steps) / config.train_steps))
    )
    shift = math.log(sigma_data / 0.5)
    for step in range(config.train_steps + 1):
        if select and (step % config.select_every == 0 or step == config.train_steps):
            error = _held_error(model, data, full.values, held)
            if error < best_error:
                best_error, best_step = error, step
                best_state = {k: v.detach().clone() for k, v in denoiser.state_dict().items()}
        if step == config.train_steps:
            break
        u, target, cond, _ = batch()
        sigma = (torch.randn(config.batch, generator=gen) * P_STD + P_MEAN + shift).exp()  # (B,)
        noise = torch.randn(u.shape, generator=gen)
        u_hat = denoiser(u + sigma[:, None, None] * noise, sigma, cond)
        weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2  # (B,)
        loss = (weight[:, None, None] * (u_hat - u).square() * target).sum() / target.sum().clamp(min=1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(denoiser.parameters(), 1.0)
        opt.step()
        sched.step()
        if progress is not None and (step % 100 == 0 or step == config.train_steps - 1):
            progress(step, loss.item())
    if best_state is not None:
        denoiser.load_state_dict(best_state)
        model.selected_step = best_step
    denoiser.eval()
    model.calibration = calibrate(model, data, generator=torch.Generator().manual_seed(config.seed + 1))
    if held is not None:
        model.stack_weight, model.spread = _stack_and_spread(model, data, full.values, held, config.seed + 2)
    return model


def _holdout(observed: np.ndarray, fraction: float, generator: torch.Generator) -> np.ndarray | None:
    """(T, K) bool: a random ``fraction`` of the observed values, kept out of training (None if too few)."""
    cells = np.flatnonzero(observed & (observed.sum(0) >= 20))  # columns with few values keep them all
    count = max(int(round(fraction * cells.size)), min(10, cells.size // 4))  # at least a few, when data is sparse
    if fraction == 0 or count < 5:
        return None
    pick = torch.randperm(cells.size, generator=generator)[:count].numpy()
    held = np.zeros(observed.size, dtype=bool)
    held[cells[pick]] = True
    return held.reshape(observed.shape)


def _held_error(model: SeriesModel, data: SeriesData, truth: np.ndarray, held: np.ndarray) -> float:
    """Mean absolute error of the deterministic point estimate (:func:`~.impute.point_estimate`) on the held-out
    values, in column standard deviations: the score that picks the training step to keep (early stopping). A
    median of a few random draws would not do: its Monte-Carlo noise shrinks as training narrows the draws, which
    rewards confidence rather than accuracy."""
    was_training = model.denoiser.training
    model.denoiser.eval()
    filled = point_estimate(model, data)
    model.denoiser.train(was_training)
    cols = np.nonzero(held)[1]
    return float(np.mean(np.abs(filled[held] - truth[held]) / model.std[cols]))


BOOTSTRAP = 200
"""Bootstrap resamples of the held-out values that measure the stack weight's standard error."""


def _lad_slope(correction: np.ndarray, needed: np.ndarray) -> float:
    """The least-absolute-deviations slope through 0 of ``needed`` on ``correction`` (no zero entries),
    argmin_w sum |needed - w correction|: the median of the ratios needed / correction weighted by |correction|."""
    ratio, weight = needed / correction, np.abs(correction)
    order = np.argsort(ratio)
    cumulative = np.cumsum(weight[order])
    return float(ratio[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


def _stack_weight(correction: np.ndarray, needed: np.ndarray, generator: np.random.Generator | None = None) -> float:
    """The weight w in [0, 1] of the network's ``correction`` to the fill, given the held-out values' ``needed``
    departure from it (both in column standard deviations).

    The fitted slope is the least-absolute-deviations one through 0 (:func:`_lad_slope`; a stacked regression,
    Breiman 1996, under the loss that the median, the point estimate, is scored by; a least-squares slope would
    follow the one or two largest held-out departures). A sparse series has only a dozen or two held-out values,
    and their slope is then mostly noise (at 90% hidden on macrodata, standard errors of 0.2-2.3 around slopes of
    -0.5 to 0.65; a slope of 0.65 with a standard error of 2.3 cost 15% of MAE, BENCHMARKS.md). So the slope b is
    shrunk by the factor that minimises the expected squared error of ``c b`` as an estimate of the true slope
    beta, ``c = beta^2 / (beta^2 + se^2)``, with beta^2 estimated without bias by ``b^2 - se^2``:
    ``w = b max(0, 1 - se^2 / b^2)`` (that factor with the estimate plugged in, truncated at 0), clipped to [0, 1];
    ``se`` is the standard deviation of the slope over ``BOOTSTRAP`` resamples of the held-out values (Efron &
    Tibshirani 1993, ch. 6), drawn from ``generator``. Without a generator, the slope is only clipped. With a
    hundred held-out values or more and a network that has learnt something (co2 and macrodata at 10% hidden:
    t = b / se of 7-11) the factor is 0.98-0.99; sunspots at 10% hidden (one column, 28 held-out values) keeps
    0.82 of its slope (0.91 -> 0.75)."""
    keep = correction != 0
    if not keep.any():
        return 1.0
    correction, needed = correction[keep], needed[keep]
    slope = _lad_slope(correction, needed)
    if slope > 0 and generator is not None:
        picks = generator.integers(0, correction.size, size=(BOOTSTRAP, correction.size))  # (R, n)
        spread = float(np.var([_lad_slope(correction[i], needed[i]) for i in picks]))
        slope *= max(0.0, 1.0 - spread / slope**2)
    return float(np.clip(slope, 0.0, 1.0))


def _stack_and_spread(
    model: SeriesModel, data: SeriesData, truth: np.ndarray, held: np.ndarray, seed: int
) -> tuple[float, float]:
    """The stack weight and the interval scale, both from the held-out values.

    The weight w in [0, 1] is the share of the network's correction (median of the draws minus the fill) that
    best fits the held-out values, shrunk by its bootstrap standard error (:func:`_stack_weight`): near 1 where the
    network has learnt something, near 0 where its corrections are noise or too few held-out values cannot tell
    (a sparse series, e.g. 90% hidden, leaves it a few hundred values to learn from). ``seed`` seeds the 32 draws
    per value and the bootstrap.
    Then the scale that makes the 90% intervals, moved with the median, cover 90% of the held-out values
    (:func:`_conformal_scale` of the distance from the median to the value, measured against the interval's half
    on that side)."""
    result = impute_series(model, data, samples=32, generator=torch.Generator().manual_seed(seed))
    cols = np.nonzero(held)[1]
    fill = model.denormalise(
        adjusted_line(model.normalise(data.values), model.seasonal, model.config.period, model.drift)
    )
    y, med, base = truth[held], result.median[held], fill[held]
    correction, needed = (med - base) / model.std[cols], (y - base) / model.std[cols]
    weight = _stack_weight(correction, needed, np.random.default_rng(seed))
    moved = (1.0 - weight) * (med - base)
    med, lower, upper = med - moved, result.lower[held] - moved, result.upper[held] - moved
    half = np.where(y >= med, upper - med, med - lower)
    ratio = np.abs(y - med) / np.maximum(half, 1e-9 * model.std[cols])
    return weight, _conformal_scale(ratio)


SMALL_LEVEL = 0.75
"""Fewer held-out values than a 90% conformal rank needs calibrate the central interval of this level instead."""


def _conformal_scale(ratio: np.ndarray, level: float = 0.9) -> float:
    """The factor on the interval's half-widths that makes ``level`` intervals cover the held-out values, from their
    ``ratio`` |value - median| / half-width: the split-conformal quantile, the ceil((n + 1) level)-th smallest ratio
    (Lei et al. 2018, sec. 2.2), where there are enough of them for that rank to lie below the largest (n >= 19 at
    90%). Fewer values calibrate the central ``SMALL_LEVEL`` (75%) interval instead, from the
    ceil((n + 1) 0.75)-th smallest ratio (the largest below 7 values), and a normal law's tails carry it to
    ``level``: times z((1 + level)/2) / z(0.875). The top of a dozen values is mostly chance: the second largest of
    15 held-out values of macrodata at 90% hidden (hole pattern 15) widened the intervals 5.9 times, so that they
    covered 99% of the hidden values and the CRPS was 20% worse than the straight line's error. Over 11 hole
    patterns there (14-20 held-out values, each rule applied to all) the second largest gave a mean CRPS of 0.88
    of the straight line's error and coverage 0.65-0.99; the upper quartile 0.82 and 0.64-0.98 (mean 0.86); the
    median 0.81 and 0.58-0.95 (mean 0.78: heavy tails go unseen) (BENCHMARKS.md)."""
    n = ratio.size
    if n == 0:
        return 1.0
    rank = int(np.ceil((n + 1) * level - 1e-9))  # 1-based rank of the conformal quantile
    if rank < n:
        return float(np.clip(np.sort(ratio)[rank - 1], 0.5, 20.0))
    rank = min(n, int(np.ceil((n + 1) * SMALL_LEVEL - 1e-9)))
    carry = stats.norm.ppf((1 + level) / 2) / stats.norm.ppf((1 + SMALL_LEVEL) / 2)
    return float(np.clip(np.sort(ratio)[rank - 1] * carry, 0.5, 20.0))
