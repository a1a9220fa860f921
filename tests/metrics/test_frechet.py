"""Fréchet distance against its closed form for Gaussians (Heusel et al. 2017; Dowson & Landau 1982)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffsight.errors import DiffsightError, ShapeError
from diffsight.metrics import frechet_distance, gaussian_statistics


def _normal(n: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d))


def test_shifted_means_give_the_squared_distance() -> None:
    m = np.array([1.0, -2.0, 0.5, 0.0])
    fd = frechet_distance(_normal(20_000, 4, 0), _normal(20_000, 4, 1) + m)
    assert fd == pytest.approx(float(m @ m), abs=0.02)


def test_scaled_isotropic_gaussians_give_d_times_squared_scale_gap() -> None:
    d, s1, s2 = 8, 1.0, 2.0
    fd = frechet_distance(s1 * _normal(20_000, d, 2), s2 * _normal(20_000, d, 3))
    assert fd == pytest.approx(d * (s1 - s2) ** 2, rel=0.03)


def test_identical_sets_give_zero_and_the_distance_is_symmetric() -> None:
    a, b = _normal(500, 6, 4), _normal(400, 6, 5) * 1.5 + 0.3
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6)


def test_torch_and_numpy_inputs_agree() -> None:
    a, b = _normal(300, 5, 6), _normal(300, 5, 7) + 1.0
    assert frechet_distance(torch.from_numpy(a).float(), torch.from_numpy(b)) == pytest.approx(
        frechet_distance(a, b), rel=1e-5
    )


def test_singular_covariances_still_give_a_finite_answer() -> None:
    """Fewer samples than dimensions: the covariances are singular; eps * I keeps the root finite."""
    a, b = _normal(10, 32, 8), _normal(10, 32, 9)
    assert np.isfinite(frechet_distance(a, b))


def test_statistics_are_float64_mean_and_unbiased_covariance() -> None:
    x = _normal(50, 3, 10).astype(np.float32)
    mean, cov = gaussian_statistics(torch.from_numpy(x))
    assert mean.dtype == cov.dtype == np.float64 and cov.shape == (3, 3)
    np.testing.assert_allclose(cov, np.cov(x.astype(np.float64).T), rtol=1e-10)


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(DiffsightError, match="at least 2"):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ShapeError):
        frechet_distance(np.zeros(5), np.zeros((5, 3)))
    with pytest.raises(ShapeError, match="dimensions differ"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(DiffsightError, match="NaN"):
        frechet_distance(np.full((5, 3), np.nan), np.zeros((5, 3)))
