"""Improved precision/recall (Kynkäänniemi et al. 2019) on sets whose answer is known by construction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffsight.errors import DiffsightError, ShapeError
from diffsight.metrics import knn_radii, precision_recall


def _blob(n: int, centre: float, seed: int, d: int = 4) -> torch.Tensor:
    return centre + torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_identical_sets_are_perfect() -> None:
    x = _blob(400, 0.0, 0)
    assert precision_recall(x, x.clone()) == (1.0, 1.0)


def test_a_far_away_fake_set_scores_zero() -> None:
    assert precision_recall(_blob(300, 0.0, 1), _blob(300, 100.0, 2)) == (0.0, 0.0)


def test_dropping_one_of_two_modes_keeps_precision_and_halves_recall() -> None:
    real = torch.cat([_blob(500, -20.0, 3), _blob(500, 20.0, 4)])
    precision, recall = precision_recall(real, real[:500])  # fakes cover the first cluster only
    assert precision == pytest.approx(1.0)
    assert recall == pytest.approx(0.5, abs=0.01)


def test_fresh_samples_of_the_same_distribution_score_high() -> None:
    precision, recall = precision_recall(_blob(1000, 0.0, 5), _blob(1000, 0.0, 6))
    assert precision > 0.8 and recall > 0.8


def test_radii_match_brute_force_and_chunking_changes_nothing() -> None:
    x = _blob(257, 0.0, 7, d=3)
    brute = torch.cdist(x, x).sort(dim=1).values[:, 3]  # column 0 is the point itself
    torch.testing.assert_close(knn_radii(x, k=3, chunk_size=50), brute)
    real, fake = _blob(300, 0.0, 8), _blob(200, 0.5, 9)
    assert precision_recall(real, fake, chunk_size=7) == precision_recall(real, fake, chunk_size=4096)


def test_numpy_inputs_and_bad_inputs() -> None:
    x = np.random.default_rng(0).standard_normal((50, 2))
    assert precision_recall(x, x) == (1.0, 1.0)
    with pytest.raises(DiffsightError, match="more than k"):
        precision_recall(x[:3], x, k=3)
    with pytest.raises(ShapeError):
        precision_recall(x, x[:, :1])
