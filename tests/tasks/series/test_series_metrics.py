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
