"""The seasonal profile of the straight-line fill and the stack weight of the network's correction.

Known answers: the closed-form leave-one-out errors equal refitting without each value; a sinusoid's profile is
recovered and a random walk gets none; the fill the network sees inside a window (torch) equals the whole-series
fill (numpy) when the window's context spans the gaps; with stack weight 0 the imputation's median is that fill.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from diffsight.errors import DiffsightError
from diffsight.tasks.series import (
    SeriesConfig,
    fit_series,
    impute_series,
    linear_interpolation,
    load_series_model,
    save_series_model,
    series_from_array,
)
from diffsight.tasks.series.features import conditioning, context_windows
from diffsight.tasks.series.fill import MIN_VALUES, adjusted_line, fit_drift, fit_seasonal_profile, loo_errors
from diffsight.tasks.series.train import _conformal_scale, _stack_weight

pytestmark = pytest.mark.usefixtures("one_thread")


def brute_force_loo(t: np.ndarray, y: np.ndarray, period: int, length: int) -> tuple[float, float]:
    """Leave each value out, refit level + trend + one harmonic, interpolate its neighbours (both fills)."""
    plain, adjusted = [], []
    for i in range(t.size):
        keep = np.arange(t.size) != i
        angle = 2 * math.pi * t / period
        x = np.column_stack([np.ones(t.size), t / length, np.sin(angle), np.cos(angle)])
        beta = np.linalg.lstsq(x[keep], y[keep], rcond=None)[0]
        season = x[:, 2:] @ beta[2:]
        plain.append(abs(np.interp(t[i], t[keep], y[keep]) - y[i]))
        adjusted.append(abs(np.interp(t[i], t[keep], (y - season)[keep]) + season[i] - y[i]))
    return float(np.mean(plain)), float(np.mean(adjusted))


def seasonal_series(length: int, period: int, seed: int, noise: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    return 0.01 * t + np.sin(2 * np.pi * t / period + 0.7) + noise * rng.standard_normal(length)


def test_closed_form_leave_one_out_equals_refitting() -> None:
    rng = np.random.default_rng(0)
    t = np.sort(rng.choice(200, size=40, replace=False))
    y = seasonal_series(200, 11, seed=1)[t]
    plain, adjusted, coef = loo_errors(t, y, 11, 200)
    assert np.allclose((plain.mean(), adjusted.mean()), brute_force_loo(t, y, 11, 200), rtol=1e-9, atol=1e-12)
    assert coef.shape == (2,)


def test_a_sinusoid_keeps_its_profile_and_a_random_walk_gets_none() -> None:
    rng = np.random.default_rng(2)
    seasonal = seasonal_series(300, 12, seed=3)
    walk = np.cumsum(rng.standard_normal(300))
    z = np.stack([seasonal, walk], axis=1)
    observed = rng.random(z.shape) < 0.2  # gaps of about 5 steps: a straight line cuts through the season
    coef = fit_seasonal_profile(np.where(observed, z, 0.0), observed, 12)
    # sin(a + 0.7) = cos(0.7) sin(a) + sin(0.7) cos(a)
    assert np.allclose(coef[0], [math.cos(0.7), math.sin(0.7)], atol=0.1)
    assert np.array_equal(coef[1], [0.0, 0.0])
    assert not fit_seasonal_profile(z, np.ones_like(observed), None).any()
    few = np.zeros_like(observed)
    few[: MIN_VALUES - 1, 0] = True
    assert not fit_seasonal_profile(z, few, 12).any()


def test_adjusted_line_is_the_straight_line_without_a_profile_and_exact_for_a_pure_season() -> None:
    rng = np.random.default_rng(4)
    values = np.cumsum(rng.standard_normal((60, 2)), axis=0)
    values[rng.random(values.shape) < 0.6] = np.nan
    assert np.allclose(adjusted_line(values, np.zeros((2, 2)), 7), linear_interpolation(values))
    t = np.arange(60)
    pure = (2.0 * np.sin(2 * np.pi * t / 7) - np.cos(2 * np.pi * t / 7))[:, None]
    sparse = np.where(rng.random((60, 1)) < 0.15, pure, np.nan)
    assert np.allclose(adjusted_line(sparse, np.array([[2.0, -1.0]]), 7), pure)


@pytest.mark.parametrize("starts", [[30, 50], [0, 96]])  # inside, and windows at both ends of the series
def test_window_fill_with_context_equals_the_whole_series_fill(starts: list[int]) -> None:
    rng = np.random.default_rng(5)
    values = np.stack([seasonal_series(120, 12, seed=6), np.cumsum(rng.standard_normal(120))], axis=1)
    values[rng.random(values.shape) < 0.7] = np.nan
    values[:5], values[-5:] = np.nan, np.nan  # the ends are extrapolated with the drift
    coef, drift = np.array([[0.9, 0.5], [0.0, 0.0]]), np.array([0.01, -0.2])
    whole = adjusted_line(values, coef, 12, drift)
    observed = torch.from_numpy(~np.isnan(values))
    z = torch.from_numpy(np.nan_to_num(values)).double()
    start = torch.tensor(starts)
    zx, ox = context_windows(z, observed, start, 24, 24)  # (2, 2, 72)
    _, fill = conditioning(zx, ox, torch.ones(2), start, 12, 24, torch.from_numpy(coef), torch.from_numpy(drift))
    for b, s in enumerate(starts):
        assert torch.allclose(fill[b].T, torch.from_numpy(whole[s : s + 24]).to(fill.dtype), atol=1e-5)


def test_drift_is_kept_only_when_significant() -> None:
    rng = np.random.default_rng(12)
    steps = rng.standard_normal((400, 2)) * 0.1
    steps[:, 0] += 0.05  # a random walk with drift 0.05 per step (10 standard errors)
    z = np.cumsum(steps, axis=0)
    observed = rng.random(z.shape) < 0.1
    drift = fit_drift(np.where(observed, z, np.nan), observed)
    assert abs(drift[0] - 0.05) < 0.01 and drift[1] == 0.0
    assert not fit_drift(z, np.zeros_like(observed)).any()
    t = np.arange(10.0)
    line = np.where(np.isin(np.arange(10), [3, 6]), t, np.nan)[:, None]  # visible at 3 and 6 only
    filled = adjusted_line(line, np.zeros((1, 2)), None, np.array([1.0]))
    assert np.allclose(filled[:, 0], t)  # continued with slope 1 beyond both ends


def test_stack_weight_known_answers() -> None:
    rng = np.random.default_rng(11)
    correction = rng.standard_normal(200)
    boot = np.random.default_rng(0)
    assert _stack_weight(correction, correction, boot) == 1.0  # the held-out values need exactly the correction
    assert _stack_weight(correction, -correction, boot) == 0.0  # opposite: the fill alone
    assert _stack_weight(correction, rng.standard_normal(200), boot) < 0.2  # unrelated: about 0
    half = _stack_weight(correction, 0.5 * correction + 0.05 * rng.standard_normal(200), boot)
    assert 0.48 < half < 0.52
    needed = correction.copy()
    needed[:40] = 10 * rng.standard_normal(40)  # a fifth of the held-out values far off: the weight holds
    assert _stack_weight(correction, needed, boot) == pytest.approx(1.0)
    assert _stack_weight(np.zeros(5), np.ones(5), boot) == 1.0  # no correction to weigh
    few = correction[:14]
    assert _stack_weight(few, 0.6 * few, boot) == pytest.approx(0.6)  # exact, even from 14 values: no shrinkage


def test_stack_weight_shrinks_a_slope_that_few_noisy_values_cannot_tell_from_zero() -> None:
    # 200 values with a clear signal: the bootstrap standard error is small and the slope stays (factor > 0.99)
    rng = np.random.default_rng(11)
    correction = rng.standard_normal(200)
    needed = 0.5 * correction + 0.3 * rng.standard_normal(200)
    plain = _stack_weight(correction, needed)
    assert 0.45 < plain < 0.6
    assert _stack_weight(correction, needed, np.random.default_rng(0)) == pytest.approx(plain, rel=0.01)
    # 14 held-out values, a true slope of 0.3 under noise ~7x the correction: the raw slopes scatter widely
    # (0-0.94 over these seeds); shrunk, none is larger than its raw slope, and most go to 0
    raw, shrunk = [], []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        c = rng.standard_normal(14)
        n = 0.3 * c + 2.0 * rng.standard_normal(14)
        raw.append(_stack_weight(c, n))
        shrunk.append(_stack_weight(c, n, np.random.default_rng(0)))
    assert max(raw) > 0.9 and all(s <= r for s, r in zip(shrunk, raw, strict=True))
    assert sum(s == 0.0 for s in shrunk) >= 3 and max(shrunk) < 0.5


def test_conformal_scale_known_answers() -> None:
    ratios = np.arange(1, 101) / 100
    assert _conformal_scale(ratios) == pytest.approx(0.91)  # the ceil(101 * 0.9) = 91st smallest
    assert _conformal_scale(np.arange(1, 20) / 10) == pytest.approx(1.8)  # n = 19: the 18th, below the largest
    carry = 1.6448536 / 1.1503494  # z(0.95) / z(0.875): a 75% interval carried to 90% with normal tails
    seven = np.array([0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 9.0])  # 7 values: the 6th smallest, ceil(8 * 0.75)
    assert _conformal_scale(seven) == pytest.approx(1.1 * carry, rel=1e-6)  # the 9.0 does not count
    fifteen = np.concatenate([np.linspace(0.5, 1.5, 13), [5.5, 6.0]])  # two far off, as macrodata's hole pattern 15
    assert _conformal_scale(fifteen) == pytest.approx(np.sort(fifteen)[11] * carry, rel=1e-6)  # 12th = ceil(12)
    assert _conformal_scale(np.array([0.2, 0.6])) == pytest.approx(0.6 * carry, rel=1e-6)  # too few: the largest
    assert _conformal_scale(np.array([])) == 1.0 and _conformal_scale(np.full(5, 100.0)) == 20.0  # bounded


@pytest.fixture(scope="module")
def seasonal_model():  # type: ignore[no-untyped-def]
    values = seasonal_series(240, 12, seed=7)
    values[np.random.default_rng(8).random(240) < 0.5] = np.nan
    data = series_from_array(values)
    config = SeriesConfig(window=24, period=12, hidden=16, blocks=2, train_steps=60, batch=32, sample_steps=6)
    return data, fit_series(data, config)


def test_fit_keeps_the_profile_and_a_stack_weight_that_load_restores(seasonal_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data, model = seasonal_model
    assert np.abs(model.seasonal).sum() > 0.5 and 0.0 <= model.stack_weight <= 1.0
    loaded = load_series_model(save_series_model(model, tmp_path / "m"))
    assert np.array_equal(loaded.seasonal, model.seasonal) and loaded.stack_weight == model.stack_weight
    a = impute_series(model, data, samples=3, generator=torch.Generator().manual_seed(1))
    b = impute_series(loaded, data, samples=3, generator=torch.Generator().manual_seed(1))
    assert np.array_equal(a.samples, b.samples)
    meta = json.loads((tmp_path / "m" / "series.json").read_text())
    meta["stack_weight"] = 1.5
    (tmp_path / "m" / "series.json").write_text(json.dumps(meta))
    with pytest.raises(DiffsightError, match="stack_weight"):
        load_series_model(tmp_path / "m")
    meta["stack_weight"], meta["seasonal"] = 0.5, [[1.0]]
    (tmp_path / "m" / "series.json").write_text(json.dumps(meta))
    with pytest.raises(DiffsightError, match="seasonal"):
        load_series_model(tmp_path / "m")


def test_models_saved_before_the_fill_parameters_load_with_a_plain_line(seasonal_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, model = seasonal_model
    folder = save_series_model(model, tmp_path / "old")
    meta = json.loads((folder / "series.json").read_text())
    for key in ("seasonal", "drift", "stack_weight"):
        del meta[key]
    (folder / "series.json").write_text(json.dumps(meta))
    old = load_series_model(folder)
    assert not old.seasonal.any() and not old.drift.any() and old.stack_weight == 1.0


def test_stack_weight_zero_puts_the_median_on_the_fill(seasonal_model) -> None:  # type: ignore[no-untyped-def]
    data, model = seasonal_model
    off = replace_model(model, stack_weight=0.0)
    result = impute_series(off, data, samples=9, generator=torch.Generator().manual_seed(2))
    fill = off.denormalise(adjusted_line(off.normalise(data.values), off.seasonal, off.config.period))
    hidden = np.isnan(data.values)
    assert np.allclose(result.median[hidden], fill[hidden], atol=1e-9)
    assert (result.upper[hidden] > result.lower[hidden]).all()  # the draws keep their spread
    on = impute_series(
        replace_model(model, stack_weight=1.0), data, samples=9, generator=torch.Generator().manual_seed(2)
    )
    assert not np.allclose(on.median[hidden], fill[hidden], atol=1e-3)


def test_without_the_seasonal_fill_the_profile_is_zero() -> None:
    values = seasonal_series(120, 12, seed=9)
    values[::3] = np.nan
    config = SeriesConfig(window=24, period=12, hidden=8, blocks=1, train_steps=2, batch=4, sample_steps=2)
    model = fit_series(series_from_array(values), replace(config, seasonal_fill=False))
    assert not model.seasonal.any()


def replace_model(model, **changes):  # type: ignore[no-untyped-def]
    """A shallow copy of ``model`` with some fields changed (the network is shared)."""
    from copy import copy

    out = copy(model)
    for name, value in changes.items():
        setattr(out, name, value)
    return out
