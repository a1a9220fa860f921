"""Mixed numeric and categorical tables: categorical fills, synthesis, and a save/load round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diffsight.errors import DiffsightError
from diffsight.tasks.tables import TableDiffusionConfig, TabularDiffusion

pytestmark = pytest.mark.usefixtures("one_thread")


def mixed_table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """x ~ N(0, 1); y = 2x + noise; kind = 'high' when x > 0 else 'low' (a category the numbers predict)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return pd.DataFrame(
        {
            "x": x,
            "y": 2 * x + 0.3 * rng.normal(size=n),
            "kind": np.where(x > 0, "high", "low"),
            "n": rng.integers(0, 5, n),
        }
    )


@pytest.fixture(scope="module")
def fitted() -> tuple[pd.DataFrame, pd.DataFrame, TabularDiffusion]:
    full = mixed_table()
    holed = full.copy()
    rng = np.random.default_rng(1)
    holed.loc[rng.random(len(full)) < 0.25, "kind"] = None
    holed.loc[rng.random(len(full)) < 0.15, "y"] = np.nan
    holed.loc[rng.random(len(full)) < 0.1, "n"] = np.nan
    config = TableDiffusionConfig(hidden=64, depth=2, steps=300, samples=16, sampling_steps=8)
    return full, holed, TabularDiffusion.fit(holed, config=config)


def test_categorical_cells_are_filled_from_the_numbers(fitted) -> None:  # type: ignore[no-untyped-def]
    full, holed, model = fitted
    result = model.impute(holed)
    hidden = holed["kind"].isna().to_numpy()
    accuracy = (result.filled["kind"][hidden] == full["kind"][hidden]).mean()
    assert accuracy > 0.85  # chance is about 0.5
    prob = result.probability["kind"].to_numpy()
    assert np.all((prob[hidden] > 0.0) & (prob[hidden] <= 1.0)) and np.isnan(prob[~hidden]).all()
    assert set(result.filled["kind"]) == {"high", "low"}
    assert result.filled.notna().all().all() and result.lower["kind"].isna().all()
    assert result.filled["n"].dtype == np.float64  # integer columns hold mean estimates after filling


def test_synthesized_rows_follow_the_table(fitted) -> None:  # type: ignore[no-untyped-def]
    full, _, model = fitted
    rows = model.synthesize(300, seed=3)
    assert list(rows.columns) == list(full.columns) and len(rows) == 300
    assert set(rows["kind"]) <= {"high", "low"}
    assert rows["x"].between(full["x"].min(), full["x"].max()).all()
    assert np.corrcoef(rows["x"], rows["y"])[0, 1] > 0.8  # the dependence is learned, not only the marginals
    consistent = ((rows["x"] > 0) == (rows["kind"] == "high")).mean()
    assert consistent > 0.8


def test_save_load_round_trip_gives_the_same_fills(fitted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, holed, model = fitted
    folder = model.save(tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "table.json"]
    meta = json.loads((folder / "table.json").read_text())
    assert meta["format"] == "diffsight-table-model" and meta["transform"]["columns"][2]["levels"] == ["high", "low"]
    again = TabularDiffusion.load(folder)
    a, b = model.impute(holed, samples=4, seed=7), again.impute(holed, samples=4, seed=7)
    pd.testing.assert_frame_equal(a.filled, b.filled)
    pd.testing.assert_frame_equal(a.upper, b.upper)
    assert a.scale == b.scale
    np.testing.assert_array_equal(model.scores, again.scores)


def test_load_refuses_what_is_not_a_table_model(fitted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, _, model = fitted
    with pytest.raises(DiffsightError, match="not a table model folder"):
        TabularDiffusion.load(tmp_path)
    folder = model.save(tmp_path / "m")
    meta = json.loads((folder / "table.json").read_text())
    meta["transform"]["columns"] = meta["transform"]["columns"][:2]  # the weights no longer fit
    (folder / "table.json").write_text(json.dumps(meta))
    with pytest.raises(DiffsightError, match="do not fit"):
        TabularDiffusion.load(folder)


def test_draws_are_seeded(fitted) -> None:  # type: ignore[no-untyped-def]
    _, holed, model = fitted
    a, b = model.impute(holed, samples=3, seed=1), model.impute(holed, samples=3, seed=1)
    pd.testing.assert_frame_equal(a.filled, b.filled)
    a = model.impute(holed, samples=3, seed=1, stack=False)  # the draws alone (a linear fill has no noise)
    c = model.impute(holed, samples=3, seed=2, stack=False)
    assert not a.filled["y"].equals(c.filled["y"])
