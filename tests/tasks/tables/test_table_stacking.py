"""Known answers for the stacked point estimate: the closed-form stacking weight, the linear fill in the table's
own units (a sum of skewed columns is linear there, not after the quantile transform), and a fitted model that
stacks, saves and reloads its weight."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from diffsight.errors import DiffsightError
from diffsight.tasks.tables import (
    GaussianPrior,
    LinearFill,
    QuantileNormal,
    TableDiffusionConfig,
    TabularDiffusion,
    conformity_scores,
    stack_weight,
)
from diffsight.tasks.tables.schema import infer_columns
from diffsight.tasks.tables.transforms import TableEncoder

pytestmark = pytest.mark.usefixtures("one_thread")


def test_stack_weight_recovers_a_known_mixture_and_clips() -> None:
    rng = np.random.default_rng(0)
    d, lin, sd = rng.normal(size=500), rng.normal(size=500), rng.uniform(0.5, 2.0, 500)
    assert stack_weight(d, lin, 0.3 * d + 0.7 * lin, sd) == pytest.approx(0.3, abs=1e-12)
    assert stack_weight(d, lin, d, sd) == pytest.approx(1.0) and stack_weight(d, lin, lin, sd) == pytest.approx(0.0)
    assert stack_weight(d, lin, 2.0 * d - lin, sd) == 1.0  # the unconstrained optimum (2) is clipped
    assert stack_weight(d, lin, -d + 2.0 * lin, sd) == 0.0
    assert stack_weight(d, d, rng.normal(size=500), sd) == 1.0  # members agree: nothing to weigh
    # the weight minimises the scaled squared error: no other weight on a grid does better
    y = 0.6 * d + 0.4 * lin + 0.5 * rng.normal(size=500)
    w = stack_weight(d, lin, y, sd)
    loss = lambda v: float((((v * d + (1 - v) * lin - y) / sd) ** 2).sum())  # noqa: E731
    assert all(loss(w) <= loss(v) + 1e-9 for v in np.linspace(0, 1, 101))
    with pytest.raises(DiffsightError, match="four arrays"):
        stack_weight(d, lin[:10], y, sd)


def sum_table(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """Two skewed columns and their exact sum: linear in the raw units, bent by a quantile-normal transform."""
    rng = np.random.default_rng(seed)
    a, b = rng.exponential(1.0, n), rng.lognormal(0.0, 0.8, n)
    return pd.DataFrame({"a": a, "b": b, "total": a + b})


def test_linear_fill_recovers_a_sum_that_the_quantile_gaussian_bends() -> None:
    full = sum_table()
    rng = np.random.default_rng(1)
    hide = np.zeros(full.shape, dtype=bool)
    hide[:, 2] = rng.random(len(full)) < 0.3  # the total is hidden; a and b are known
    holed = full.mask(hide)
    specs = infer_columns(holed, ())
    encoder = TableEncoder.fit(holed, specs)
    encoded = encoder.encode(holed)
    fill = LinearFill.fit(holed, encoder, encoded, encoded.observed, ridge=0.0)
    given = encoded.observed[:, encoder.coord_column]
    linear = fill.fill(fill.coordinates(holed, encoder, encoded), given)
    truth = full["total"].to_numpy()[hide[:, 2]]
    err_linear = np.abs(linear[hide[:, 2], 2] - truth).max()
    assert err_linear < 1e-3 * truth.std()  # exact up to EM's tolerance
    np.testing.assert_allclose(linear[~hide], holed.to_numpy()[~hide], rtol=1e-12)  # known cells unchanged
    # negative control: the same Gaussian conditional in quantile-normal coordinates misses the sum
    prior = GaussianPrior.fit(encoded.values, given, ridge=0.0)
    g, _ = prior.conditional(torch.as_tensor(encoded.values * given), torch.as_tensor(given))
    quantile = encoder.decode_numeric(2, g.double().numpy()[hide[:, 2], 2])
    assert np.sqrt(np.mean((quantile - truth) ** 2)) > 0.05 * truth.std()


def test_model_stacks_its_draws_with_the_linear_fill_and_keeps_the_weight(tmp_path: Path) -> None:
    full = sum_table(400)
    rng = np.random.default_rng(2)
    hide = rng.random(full.shape) < 0.2
    holed = full.mask(hide)
    config = TableDiffusionConfig(hidden=16, depth=1, steps=40, samples=6, sampling_steps=4)  # barely trained
    model = TabularDiffusion.fit(holed, config=config)
    assert model.linear is not None and 0.0 <= model.weight < 0.5  # the linear fill is far better here
    stacked, plain = model.impute(holed, seed=5), model.impute(holed, seed=5, stack=False)
    assert stacked.stack_weight == model.weight and plain.stack_weight == 1.0
    rmse = lambda f: float(np.sqrt(np.mean(((f - full) / full.std()).to_numpy()[hide] ** 2)))  # noqa: E731
    assert rmse(stacked.filled) < 0.5 * rmse(plain.filled)
    # intervals are centred on the filled value; a better centre needs a smaller conformal scale
    inside = (stacked.lower <= stacked.filled) & (stacked.filled <= stacked.upper)
    assert inside.to_numpy()[hide].all() and stacked.scale < plain.scale
    assert np.isfinite(stacked.lower.to_numpy()[hide]).all() and np.isnan(stacked.lower.to_numpy()[~hide]).all()
    again = TabularDiffusion.load(model.save(tmp_path / "m"))
    assert again.weight == model.weight and again.config.stack_linear
    pd.testing.assert_frame_equal(again.impute(holed, seed=5).filled, stacked.filled)
    off = TabularDiffusion.fit(holed, config=config.replace(stack_linear=False))
    assert off.linear is None and off.weight == 1.0
    pd.testing.assert_frame_equal(off.impute(holed, seed=5).filled, plain.filled)  # same seeds: same model


def test_new_settings_are_checked_and_a_model_saved_before_them_loads_unstacked(tmp_path: Path) -> None:
    with pytest.raises(DiffsightError, match="calibration_given"):
        TableDiffusionConfig(calibration_given="rows")
    with pytest.raises(DiffsightError, match="stack_linear"):
        TableDiffusionConfig(stack_linear=1)  # type: ignore[arg-type]
    full = sum_table(200)
    holed = full.mask(np.random.default_rng(3).random(full.shape) < 0.2)
    config = TableDiffusionConfig(hidden=16, depth=1, steps=20, samples=4, sampling_steps=4)
    model = TabularDiffusion.fit(holed, config=config)
    folder = model.save(tmp_path / "m")
    meta = json.loads((folder / "table.json").read_text())  # as written before the two settings existed
    del meta["config"]["stack_linear"], meta["config"]["calibration_given"]
    (folder / "table.json").write_text(json.dumps(meta))
    tensors = load_file(str(folder / "model.safetensors"))
    old = {k: v for k, v in tensors.items() if not k.startswith("linear.") and k != "calibration.stacked_scores"}
    save_file(old, str(folder / "model.safetensors"))
    again = TabularDiffusion.load(folder)
    assert not again.config.stack_linear and again.config.calibration_given == "training"
    assert again.linear is None and again.weight == 1.0
    pd.testing.assert_frame_equal(again.impute(holed, seed=1).filled, model.impute(holed, seed=1, stack=False).filled)


def test_a_tied_value_is_covered_as_soon_as_the_interval_meets_its_range() -> None:
    draws = np.array([[-1.0, 1.0], [-1.0, 1.0], [-1.0, 1.0], [2.0, 4.0]])  # mean 0 or 3, std sqrt(2)
    lo, hi = np.array([0.5, -1.0, -3.0, 0.0]), np.array([1.0, 1.0, -2.0, 1.0])
    got = conformity_scores(draws, lo, truth_upper=hi)
    np.testing.assert_allclose(got, np.array([0.5, 0.0, 2.0, 2.0]) / np.sqrt(2.0))
    np.testing.assert_allclose(conformity_scores(draws, lo, truth_upper=lo), conformity_scores(draws, lo))
    with pytest.raises(DiffsightError, match="truth_upper"):
        conformity_scores(draws, hi, truth_upper=lo)
    # every coordinate of a tie's range decodes to the tied value, and just outside it does not
    column = QuantileNormal.fit(np.array([1.0] * 30 + [2.0] * 50 + list(np.linspace(2.5, 9.0, 40))))
    z_lo, z_hi = column.forward_range(np.array([1.0, 2.0, 5.0]))
    for a, b, value in zip(z_lo, z_hi, (1.0, 2.0, 5.0), strict=True):
        np.testing.assert_allclose(column.inverse(np.linspace(a, b, 5)), value)
    assert z_lo[1] < z_hi[1] and z_lo[2] == pytest.approx(z_hi[2])
    assert column.inverse(np.array([z_lo[1] - 0.01]))[0] < 2.0 < column.inverse(np.array([z_hi[1] + 0.01]))[0]
