"""Known answers for the table model: on Gaussian rows the best fill of a missing cell is the closed-form
conditional mean, and the stated 90% intervals must cover about 90% of the hidden values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from diffsight.errors import DiffsightError
from diffsight.tasks.tables import TableDiffusionConfig, TabularDiffusion

pytestmark = pytest.mark.usefixtures("one_thread")

MEAN = np.array([1.0, -2.0, 0.5])
COV = (
    np.array([[1.0, 0.8, 0.6], [0.8, 1.0, 0.7], [0.6, 0.7, 1.0]])
    * np.array([2.0, 1.0, 0.5])[:, None]
    * np.array([2.0, 1.0, 0.5])[None, :]
)


def gaussian_conditional_mean(row: np.ndarray) -> np.ndarray:
    """E[x_missing | x_observed] for N(MEAN, COV): mu_m + S_mo S_oo^-1 (x_o - mu_o)."""
    miss = np.isnan(row)
    out = row.copy()
    obs = ~miss
    if obs.any():
        gain = COV[np.ix_(miss, obs)] @ np.linalg.inv(COV[np.ix_(obs, obs)])
        out[miss] = MEAN[miss] + gain @ (row[obs] - MEAN[obs])
    else:
        out[miss] = MEAN[miss]
    return out


@pytest.fixture(scope="module")
def gaussian_case() -> tuple[pd.DataFrame, np.ndarray, np.ndarray, TabularDiffusion]:
    rng = np.random.default_rng(0)
    full = rng.multivariate_normal(MEAN, COV, size=1200)
    hide = rng.random(full.shape) < 0.2
    data = np.where(hide, np.nan, full)
    frame = pd.DataFrame(data, columns=["a", "b", "c"])
    config = TableDiffusionConfig(
        hidden=64, depth=2, dropout=0.0, weight_decay=1e-4, steps=600, samples=40, sampling_steps=12
    )  # 1,200 rows need no regularisation
    return frame, full, hide, TabularDiffusion.fit(frame, config=config)


@pytest.mark.slow
def test_imputation_approaches_the_gaussian_conditional_mean(gaussian_case) -> None:  # type: ignore[no-untyped-def]
    frame, full, hide, model = gaussian_case
    result = model.impute(frame, samples=100)  # Monte Carlo error of the mean: 1/10 of the spread
    oracle = np.stack([gaussian_conditional_mean(r) for r in frame.to_numpy()])
    scale = np.sqrt(np.diag(COV))
    filled = result.filled.to_numpy()

    def dist(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.sqrt((((a - b) / scale)[hide] ** 2).mean()))

    oracle_err = dist(oracle, full)  # the best any imputer can do on average
    assert dist(filled, full) < 1.1 * oracle_err
    assert dist(filled, oracle) < 0.35 * oracle_err  # close to the closed form itself
    # negative control: filling with the column means (ignoring the observed cells) fails the same check
    marginal = np.where(hide, MEAN[None, :], full)
    assert dist(marginal, oracle) > 0.35 * oracle_err
    # observed cells are untouched, every missing one is filled
    np.testing.assert_array_equal(filled[~hide], full[~hide])
    assert not np.isnan(filled).any()


@pytest.mark.slow
def test_stated_coverage_is_met_on_hidden_cells(gaussian_case) -> None:  # type: ignore[no-untyped-def]
    frame, full, hide, model = gaussian_case
    result = model.impute(frame, coverage=0.9, seed=1)
    lo, hi = result.lower.to_numpy(), result.upper.to_numpy()
    inside = (full >= lo) & (full <= hi)
    assert 0.85 <= inside[hide].mean() <= 0.95
    assert np.isnan(lo[~hide]).all()
    # the 50% intervals are narrower and cover about half (a check that can fail: the 90% ones would not)
    half = model.impute(frame, coverage=0.5, seed=1)
    inside_half = (full >= half.lower.to_numpy()) & (full <= half.upper.to_numpy())
    assert 0.4 <= inside_half[hide].mean() <= 0.6
    assert not 0.4 <= inside[hide].mean() <= 0.6


def test_a_table_without_missing_cells_is_refused(gaussian_case) -> None:  # type: ignore[no-untyped-def]
    frame, full, _, model = gaussian_case
    with pytest.raises(DiffsightError, match="no missing values"):
        model.impute(pd.DataFrame(full, columns=frame.columns))
