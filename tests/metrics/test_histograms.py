"""Factor histograms and total variation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffsight.errors import DiffsightError, ShapeError
from diffsight.metrics import histogram, total_variation


def test_histogram_counts_every_value_including_absent_ones() -> None:
    h = histogram(torch.tensor([0, 2, 2, 3]), 5)
    np.testing.assert_allclose(h, [0.25, 0.0, 0.5, 0.25, 0.0])
    assert h.sum() == pytest.approx(1.0)


def test_total_variation_is_half_the_l1_distance() -> None:
    assert total_variation(np.array([0.5, 0.5, 0.0]), np.array([0.5, 0.5, 0.0])) == 0.0
    assert total_variation(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == 1.0
    assert total_variation(torch.tensor([0.7, 0.3]), np.array([0.5, 0.5])) == pytest.approx(0.2)


def test_bad_inputs() -> None:
    with pytest.raises(DiffsightError, match="lie in"):
        histogram(np.array([0, 5]), 5)
    with pytest.raises(DiffsightError, match="integer"):
        histogram(np.array([0.5]), 2)
    with pytest.raises(ShapeError):
        histogram(np.array([], dtype=np.int64), 2)
    with pytest.raises(ShapeError):
        total_variation(np.ones(2) / 2, np.ones(3) / 3)
