"""CRPS from samples against the closed form of a Gaussian; baselines and the straight-line fill on known cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffsight.tasks.series import crps_gaussian, crps_samples, linear_interpolation, seasonal_naive
from diffsight.tasks.series.features import linear_fill

pytestmark = pytest.mark.usefixtures("one_thread")


def test_crps_of_samples_matches_the_gaussian_closed_form() -> None:
    rng = np.random.default_rng(0)
    mu, sigma = np.array([0.0, 1.0, -2.0]), np.array([1.0, 0.5, 3.0])
    y = np.array([0.3, 2.5, -2.0])
    samples = mu + sigma * rng.standard_normal((40_000, 3))
    exact = crps_gaussian(mu, sigma, y)
    assert np.allclose(crps_samples(samples, y), exact, rtol=0.02)
    # negative control: samples of the wrong scale give a CRPS that the same tolerance rejects
    assert not np.allclose(crps_samples(mu + 1.3 * sigma * rng.standard_normal((40_000, 3)), y), exact, rtol=0.02)


def test_crps_sorted_form_equals_the_pairwise_definition_and_a_point_forecast_gives_its_error() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal(7), 0.4
    direct = np.abs(x - y).mean() - 0.5 * np.abs(x[:, None] - x[None, :]).mean()
    assert crps_samples(x, np.array(y)) == pytest.approx(direct, abs=1e-12)
    assert crps_samples(np.array([[1.5]]), np.array([0.25]))[0] == pytest.approx(1.25)


def test_linear_fill_matches_numpy_interp_and_reports_distances() -> None:
    values = torch.tensor([[[0.0, 9.0, 2.0, 9.0, 9.0, 8.0, 9.0]]])
    mask = torch.tensor([[[False, False, True, False, False, True, False]]])
    filled, dist = linear_fill(values, mask)
    assert filled[0, 0].tolist() == pytest.approx([2.0, 2.0, 2.0, 4.0, 6.0, 8.0, 8.0])
    assert dist[0, 0].tolist() == [2, 1, 0, 1, 1, 0, 1]
    empty, far = linear_fill(values, torch.zeros_like(mask))
    assert empty.abs().sum() == 0 and (far == 7).all()


def test_baselines_are_exact_on_a_line_and_on_a_pure_season() -> None:
    t = np.arange(40, dtype=np.float64)
    line = (3 * t + 1)[:, None]
    season = np.tile([1.0, 5.0, 2.0, -1.0], 10)[:, None]
    gaps = np.zeros(40, dtype=bool)
    gaps[[5, 6, 7, 20, 33]] = True
    assert np.allclose(linear_interpolation(np.where(gaps[:, None], np.nan, line)), line)
    assert np.allclose(seasonal_naive(np.where(gaps[:, None], np.nan, season), 4), season)
    # negative control: straight lines do not recover the season
    assert not np.allclose(linear_interpolation(np.where(gaps[:, None], np.nan, season)), season)


def test_conditioning_with_context_bridges_a_gap_across_the_window_edge() -> None:
    """The fill over a window equals straight-line interpolation of the whole series when the context reaches the
    next visible value; without context the gap at the edge is extrapolated flat (negative control)."""
    from diffsight.tasks.series.features import conditioning, context_windows

    t = np.arange(40, dtype=np.float64)
    line = 0.5 * t - 3.0
    observed = np.ones(40, dtype=bool)
    observed[14:22] = False  # a gap across the right edge of the window [4, 20)
    z = torch.from_numpy(np.where(observed, line, 0.0)).float()[:, None]  # (T, 1)
    obs = torch.from_numpy(observed)[:, None]
    starts = torch.tensor([4])
    scale = torch.ones(1)
    zx, ox = context_windows(z, obs, starts, 16, 8)
    assert zx.shape == (1, 1, 32) and torch.equal(zx[0, 0, 8:24], z[4:20, 0])
    _, fill = conditioning(zx, ox, scale, starts, None, 8)
    assert fill.shape == (1, 1, 16)
    assert np.allclose(fill[0, 0].numpy(), line[4:20], atol=1e-5)
    _, flat = conditioning(zx[..., 8:24], ox[..., 8:24], scale, starts, None, 0)
    assert np.allclose(flat[0, 0, 10:].numpy(), line[13]) and not np.allclose(flat[0, 0].numpy(), line[4:20])
    # steps before the series' start are padding, never visible
    zx0, ox0 = context_windows(z, obs, torch.tensor([0]), 16, 8)
    assert not ox0[0, 0, :8].any() and ox0[0, 0, 8:].all() == obs[:16, 0].all()
