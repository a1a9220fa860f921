"""Column typing, the quantile-normal and one-hot transforms, and their JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from diffsight.errors import DiffsightError
from diffsight.tasks.tables import QuantileNormal, TableEncoder, infer_columns


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 200
    return pd.DataFrame(
        {
            "income": rng.lognormal(3.0, 1.0, n),
            "age": rng.integers(18, 90, n),
            "city": rng.choice(["Oslo", "Lima", "Pune"], n),
            "member": rng.random(n) < 0.3,
        }
    )


def test_quantile_normal_maps_any_marginal_to_a_standard_normal_and_back() -> None:
    x = np.random.default_rng(1).exponential(2.0, 5000)
    q = QuantileNormal.fit(x)
    z = q.forward(x)
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
    assert stats.kstest(z, "norm").pvalue > 0.01
    np.testing.assert_allclose(q.inverse(z), x, rtol=1e-4, atol=1e-5)  # exact up to the clip at the extremes
    assert np.all(np.diff(q.inverse(np.linspace(-6, 6, 101))) >= 0)  # monotone
    np.testing.assert_allclose(q.inverse(np.array([-9.0, 9.0])), [x.min(), x.max()])  # the observed range


def test_quantile_normal_ties_and_constants() -> None:
    binary = QuantileNormal.fit(np.array([0.0] * 70 + [1.0] * 30))
    z = binary.forward(np.array([0.0, 1.0]))
    np.testing.assert_allclose(z, stats.norm.ppf([0.35, 0.85]), atol=0.02)  # the middle of each CDF step
    constant = QuantileNormal.fit(np.full(10, 4.5))
    assert constant.forward(np.array([4.5])).tolist() == [0.0] and constant.inverse(np.array([1.3])).tolist() == [4.5]


def test_column_kinds_and_encoding_round_trip() -> None:
    frame = _frame()
    specs = infer_columns(frame)
    assert [s.kind for s in specs] == ["numeric", "numeric", "categorical", "categorical"]
    assert [s.kind for s in infer_columns(frame, categorical=["age"])][1] == "categorical"
    enc = TableEncoder.fit(frame, specs)
    assert enc.dim == 1 + 1 + 3 + 2 and enc.coord_column.tolist() == [0, 1, 2, 2, 2, 3, 3]
    encoded = enc.encode(frame)
    assert encoded.observed.all()
    assert set(np.unique(encoded.values[:, 2:])) == {-1.0, 1.0}  # +-1 one-hot
    assert (encoded.values[:, 2:5] == 1).sum(1).tolist() == [1] * len(frame)
    back = enc.decode(encoded.values)
    np.testing.assert_allclose(back["income"], frame["income"], rtol=1e-6)
    np.testing.assert_allclose(back["age"], frame["age"], atol=1e-6)
    assert back["city"].tolist() == frame["city"].tolist() and back["member"].tolist() == frame["member"].tolist()
    # through JSON and back: the same encoding
    again = TableEncoder.from_json(json.loads(json.dumps(enc.to_json())))
    np.testing.assert_array_equal(again.encode(frame).values, encoded.values)


def test_missing_cells_encode_as_unobserved() -> None:
    frame = _frame().astype({"age": float})
    frame.loc[3, "income"] = np.nan
    frame.loc[5, "city"] = None
    enc = TableEncoder.fit(frame, infer_columns(frame))
    encoded = enc.encode(frame)
    assert not encoded.observed[3, 0] and not encoded.observed[5, 2] and encoded.observed.sum() == 4 * 200 - 2
    assert (encoded.values[5, 2:5] == 0).all()


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame(), "no columns"),
        (pd.DataFrame({"a": pd.Series([], dtype=float)}), "no rows"),
        (pd.DataFrame({"a": [1.0, 2.0], "b": [np.nan, np.nan]}), "hold no values"),
        (pd.DataFrame({"a": [1.0, 2.0], "when": pd.to_datetime(["2020-01-01", "2021-01-01"])}), "unknown column type"),
        (pd.DataFrame({"a": [1.0, 2.0], "z": [1 + 2j, 3j]}), "unknown column type"),
        (pd.DataFrame({"a": [1.0, 2.0], "mix": ["x", 3.5]}), "unknown column type"),
        (pd.DataFrame({"id": [f"id{i}" for i in range(150)]}), "identifier"),
        (pd.DataFrame({"a": [1.0, np.inf]}), "infinite"),
        (pd.DataFrame({"a": ["1.5", "2", "3", "4", "x"]}), "mostly numbers"),
        (pd.DataFrame({"d": ["2024-01-01", "2024-02-03"]}), "holds dates"),
        (pd.DataFrame({"a": [1, 2], "a2": [3, 4]}).rename(columns={"a2": "a"}), "must be unique"),
    ],
)
def test_refusals_say_what_to_fix(frame: pd.DataFrame, message: str) -> None:
    with pytest.raises(DiffsightError, match=message):
        infer_columns(frame)


def test_small_text_columns_are_categories() -> None:
    frame = pd.DataFrame({"size": ["S", "M", "L", "M", None], "code": ["1", "2", "A", "B", "C"]})
    assert [s.kind for s in infer_columns(frame)] == ["categorical", "categorical"]


def test_unknown_categorical_name_and_unseen_level_are_refused() -> None:
    frame = _frame()
    with pytest.raises(DiffsightError, match="not in the table"):
        infer_columns(frame, categorical=["nope"])
    enc = TableEncoder.fit(frame, infer_columns(frame))
    other = frame.copy()
    other.loc[0, "city"] = "Rome"
    with pytest.raises(DiffsightError, match="never saw"):
        enc.encode(other)
    with pytest.raises(DiffsightError, match="differ from the fitted"):
        enc.encode(frame[["age", "income", "city", "member"]])
