"""Known answers: on an AR(1) series the posterior of a hidden value given its two neighbours is closed form.

For x_t = phi x_{t-1} + e_t, e_t ~ N(0, 1 - phi^2) (unit marginal variance), the value between two observed
neighbours a, b is Gaussian with mean phi (a + b) / (1 + phi^2) and variance (1 - phi^2) / (1 + phi^2) (the
Markov property; the precision of x_t given both neighbours is (1 + phi^2) / (1 - phi^2)). The model, trained only
on self-supervised masks, must reproduce both; straight-line interpolation and the marginal variance must not.
Also: the streaming score flags an injected jump; save/load reproduces the samples bit for bit.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from diffsight.errors import DiffsightError
from diffsight.tasks.series import (
    SeriesConfig,
    StreamScorer,
    fit_series,
    impute_series,
    load_series_model,
    save_series_model,
    series_from_array,
)

pytestmark = pytest.mark.usefixtures("one_thread")

PHI = -0.6
COND_VAR = (1 - PHI**2) / (1 + PHI**2)


def ar1(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.empty(n)
    x[0] = rng.standard_normal()
    for t in range(1, n):
        x[t] = PHI * x[t - 1] + np.sqrt(1 - PHI**2) * rng.standard_normal()
    return x


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    config = SeriesConfig(  # holdout=0: the raw posterior is the known answer, without the width calibration
        window=16, hidden=32, blocks=4, train_steps=800, batch=64, sample_steps=20, holdout=0.0, seed=0
    )
    return fit_series(series_from_array(ar1(3000, seed=1)), config)


def check_posterior(means: np.ndarray, variances: np.ndarray, mu: np.ndarray) -> tuple[bool, bool]:
    """(mean within 0.3 conditional sd in RMS, average variance within 25% of the closed form)."""
    mean_ok = float(np.sqrt(np.mean((means - mu) ** 2)) / np.sqrt(COND_VAR)) < 0.3
    ratio = float(np.mean(variances) / COND_VAR)
    return mean_ok, 0.75 < ratio < 1.33


@pytest.mark.slow
def test_posterior_of_an_isolated_gap_matches_the_closed_form(model) -> None:  # type: ignore[no-untyped-def]
    x = ar1(301, seed=2)
    hidden = np.arange(301) % 3 == 1  # every hidden value has both neighbours observed
    data = series_from_array(np.where(hidden, np.nan, x))
    result = impute_series(model, data, samples=64, generator=torch.Generator().manual_seed(0))
    t = np.flatnonzero(hidden)
    mu = PHI * (x[t - 1] + x[t + 1]) / (1 + PHI**2)
    draws = result.samples[:, t, 0]  # (S, n)
    assert check_posterior(draws.mean(0), draws.var(0, ddof=1), mu) == (True, True)
    # negative controls: the straight line between neighbours, and the unconditional (marginal) variance
    assert not check_posterior(0.5 * (x[t - 1] + x[t + 1]), draws.var(0, ddof=1), mu)[0]
    assert not check_posterior(draws.mean(0), np.ones(t.size), mu)[1]
    inside = (result.lower[t, 0] <= x[t]) & (x[t] <= result.upper[t, 0])
    assert 0.8 < inside.mean() <= 1.0  # 90% intervals


@pytest.mark.slow
def test_stream_scorer_flags_an_injected_jump_with_bounded_memory(model) -> None:  # type: ignore[no-untyped-def]
    clean = ar1(60, seed=3)
    spiked = clean.copy()
    spiked[45] += 5.0  # about 6 predictive standard deviations
    scores = {}
    for name, series in (("clean", clean), ("spiked", spiked)):
        scorer = StreamScorer(model, samples=32, generator=torch.Generator().manual_seed(0))
        scores[name] = {s.index - model.train_length: s.z for s in scorer.scores(iter(series.tolist()))}
        assert len(scorer._past) == model.window - 1  # only the last window is kept
    assert len(scores["spiked"]) == 60 - (model.window - 1)
    z = scores["spiked"]
    assert max(z, key=z.get) in (45, 46) and z[45] > 4
    others = [v for i, v in z.items() if i not in (45, 46)]
    assert np.median(others) < 1.5  # |N(0, 1)| has median 0.67
    # negative control: without the jump nothing scores near it
    assert max(scores["clean"].values()) < z[45] - 1


@pytest.mark.slow
def test_save_and_load_reproduce_the_samples(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = save_series_model(model, tmp_path / "m")
    assert sorted(p.name for p in folder.iterdir()) == ["series.json", "series.safetensors"]
    assert json.loads((folder / "series.json").read_text())["calibration"] is not None
    loaded = load_series_model(folder)
    x = ar1(40, seed=4)
    x[[5, 17, 30]] = np.nan
    data = series_from_array(x)
    a = impute_series(model, data, samples=4, forecast=3, generator=torch.Generator().manual_seed(5))
    b = impute_series(loaded, data, samples=4, forecast=3, generator=torch.Generator().manual_seed(5))
    assert np.array_equal(a.samples, b.samples) and a.samples.shape == (4, 43, 1)
    assert np.isnan(a.samples).sum() == 0 and np.array_equal(
        a.samples[:, :40, 0][:, ~np.isnan(x)], np.broadcast_to(x[~np.isnan(x)], (4, 37))
    )


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(DiffsightError, match="at least 8"):
        fit_series(series_from_array(np.arange(5.0)))
    with pytest.raises(DiffsightError, match="infinite"):
        series_from_array([1.0, np.inf, 2.0])
    with pytest.raises(DiffsightError, match="no values"):
        series_from_array(np.array([[1.0, np.nan], [2.0, np.nan]]))
    with pytest.raises(DiffsightError, match="not a series model folder"):
        load_series_model(tmp_path)
    with pytest.raises(DiffsightError, match="window"):
        SeriesConfig(window=3)


@pytest.mark.slow
def test_held_out_selection_keeps_weights_no_worse_than_the_last() -> None:
    """The same training run with and without selection: the kept weights' held-out error is at most the last
    weights' (same seed, so both runs follow the same trajectory, whatever the global generator's state)."""
    from diffsight.tasks.series.train import _held_error, _holdout

    data = series_from_array(np.stack([ar1(400, seed=6), ar1(400, seed=7)], axis=1))
    base = SeriesConfig(window=16, hidden=16, blocks=2, train_steps=120, batch=32, sample_steps=6, seed=1)
    picked = fit_series(data, replace(base, select_every=40))
    torch.manual_seed(123)  # the global generator must not matter
    last = fit_series(data, replace(base, select_every=0))
    assert picked.selected_step in (0, 40, 80, 120) and last.selected_step is None
    held = _holdout(data.observed, base.holdout, torch.Generator().manual_seed(base.seed + 3))
    masked = series_from_array(np.where(held, np.nan, data.values))
    errors = [_held_error(m, masked, data.values, held) for m in (picked, last)]
    assert errors[0] <= errors[1] + 1e-12
    weights = [m.denoiser.state_dict().values() for m in (picked, last)]
    same = all(torch.equal(a, b) for a, b in zip(*weights, strict=True))
    assert same == (picked.selected_step == 120)
    assert picked.residual_scale.shape == (2,) and (picked.residual_scale > 0).all()
