"""Known answers for the Gaussian linear prior of the table model: the batched per-row conditional against
numpy's closed form, EM with missing cells against the true parameters, and an untrained residual network
drawing exactly from the Gaussian conditional."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from diffsight.tasks.tables import TableDiffusionConfig, TabularDiffusion
from diffsight.tasks.tables.draw import draw_rows
from diffsight.tasks.tables.fit import build_denoiser
from diffsight.tasks.tables.gaussian import GaussianPrior, gaussian_conditional

pytestmark = pytest.mark.usefixtures("one_thread")

MEAN = np.array([1.0, -2.0, 0.5, 0.0])
_L = np.array([[1.0, 0, 0, 0], [0.8, 0.6, 0, 0], [0.3, -0.5, 0.7, 0], [-0.2, 0.4, 0.1, 0.5]])
COV = _L @ _L.T


def closed_form(row: np.ndarray, given: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """mu_m + S_mo S_oo^-1 (x_o - mu_o) and S_mm - S_mo S_oo^-1 S_om with numpy's solve, padded to (D,), (D, D)."""
    m, o = ~given, given
    mean, cov = row.copy(), np.zeros((row.size, row.size))
    gain = np.linalg.solve(COV[np.ix_(o, o)], COV[np.ix_(o, m)]).T if o.any() else np.zeros((m.sum(), 0))
    mean[m] = MEAN[m] + gain @ (row[o] - MEAN[o])
    cov[np.ix_(m, m)] = COV[np.ix_(m, m)] - gain @ COV[np.ix_(o, m)]
    return mean, cov


def test_batched_conditional_matches_numpy_closed_form() -> None:
    rng = np.random.default_rng(0)
    rows = rng.multivariate_normal(MEAN, COV, size=64)
    given = rng.random(rows.shape) < 0.5
    given[0], given[1] = False, True  # nothing given; everything given
    got_mean, got_cov = gaussian_conditional(
        torch.tensor(MEAN), torch.tensor(COV), torch.tensor(rows), torch.tensor(given), full=True
    )
    _, got_var = gaussian_conditional(torch.tensor(MEAN), torch.tensor(COV), torch.tensor(rows), torch.tensor(given))
    want = [closed_form(r, g) for r, g in zip(rows, given, strict=True)]
    np.testing.assert_allclose(got_mean.numpy(), np.stack([w[0] for w in want]), atol=1e-10)
    np.testing.assert_allclose(got_cov.numpy(), np.stack([w[1] for w in want]), atol=1e-10)
    np.testing.assert_allclose(got_var.numpy(), np.stack([np.diag(w[1]) for w in want]), atol=1e-10)
    np.testing.assert_allclose(got_mean[0].numpy(), MEAN, atol=1e-12)  # nothing given: the marginal
    # negative control: regressing on the wrong block (S_oo replaced by its diagonal) misses the closed form
    i = next(i for i, g in enumerate(given) if 2 <= g.sum() < g.size)  # >= 2 given: S_oo is not diagonal
    r, g = rows[i], given[i]
    naive = MEAN[~g] + COV[np.ix_(~g, g)] @ ((r[g] - MEAN[g]) / np.diag(COV)[g])
    assert np.abs(naive - closed_form(r, g)[0][~g]).max() > 1e-3


def test_em_recovers_mean_and_covariance_with_missing_cells() -> None:
    rng = np.random.default_rng(1)
    full = rng.multivariate_normal(MEAN, COV, size=4000)
    observed = rng.random(full.shape) > 0.3
    observed[~observed.any(axis=1), 0] = True
    prior = GaussianPrior.fit(np.where(observed, full, 0.0), observed, ridge=0.0)
    # sampling error of 4000 rows with 30% missing: ~0.03 on these entries
    np.testing.assert_allclose(prior.mean.numpy(), MEAN, atol=0.06)
    np.testing.assert_allclose(prior.cov.numpy(), COV, atol=0.08)
    # negative control: the covariance of the zero-filled table (what EM corrects) is far off
    zero_filled = np.cov(np.where(observed, full, 0.0), rowvar=False)
    assert np.abs(zero_filled - COV).max() > 0.2


@pytest.mark.parametrize("mode", ["residual", "input"])
def test_untrained_residual_network_draws_the_gaussian_conditional(mode: str) -> None:
    """Zero network output is EDM's exact denoiser of N(0, 1): in residual mode draws follow g + s N(0, 1)."""
    config = TableDiffusionConfig(hidden=16, depth=1, dropout=0.0, sampling_steps=24, linear_prior=mode)
    torch.manual_seed(0)
    denoiser = build_denoiser(4, config).eval()  # output layer initialised to zero
    prior = GaussianPrior(torch.tensor(MEAN), torch.tensor(COV))
    rows = np.array([[3.0, 0.0, 0.0, 0.0], [0.0, -1.0, 1.0, 0.0]])
    given = np.array([[True, False, False, False], [False, True, True, False]])
    draws = draw_rows(
        denoiser, rows, given, 4000, config, generator=torch.Generator().manual_seed(0), prior=prior
    )  # (2, K, 4)
    want = [closed_form(r, g) for r, g in zip(rows, given, strict=True)]
    mean, std = draws.mean(axis=1), draws.std(axis=1)
    want_mean = np.stack([w[0] for w in want])
    want_std = np.sqrt(np.stack([np.diag(w[1]) for w in want]))
    hidden = ~given
    close = np.allclose(mean[hidden], want_mean[hidden], atol=0.05) and np.allclose(
        std[hidden], want_std[hidden], rtol=0.05
    )
    np.testing.assert_array_equal(draws[:, :, given[0]][0], np.broadcast_to(rows[0, given[0]], (4000, 1)))
    # "input" only feeds g to the network: untrained, it draws the N(0, 1) marginal (the negative control)
    assert close == (mode == "residual")


def test_residual_model_saves_its_prior_and_fills_the_same_after_loading(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(2)
    full = rng.multivariate_normal(MEAN, COV, size=200)
    frame = pd.DataFrame(np.where(rng.random(full.shape) < 0.2, np.nan, full), columns=list("abcd"))
    config = TableDiffusionConfig(hidden=16, depth=1, steps=20, samples=4, sampling_steps=4, linear_prior="residual")
    model = TabularDiffusion.fit(frame, config=config)
    assert model.prior is not None
    again = TabularDiffusion.load(model.save(tmp_path / "m"))
    assert again.config.linear_prior == "residual" and again.prior is not None
    np.testing.assert_array_equal(again.prior.cov.numpy(), model.prior.cov.numpy())
    a, b = model.impute(frame, seed=3), again.impute(frame, seed=3)
    pd.testing.assert_frame_equal(a.filled, b.filled)
