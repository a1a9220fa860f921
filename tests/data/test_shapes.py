"""The procedural shapes: seeding, range, planted factor frequencies, and that every factor shows in the pixels."""

from __future__ import annotations

import pytest
import torch

from diffsight.data import SHAPE_FACTORS, make_shapes
from diffsight.errors import DiffsightError


def only(**chosen: int) -> dict[str, list[float]]:
    """Frequencies that force each factor to one value (index ``chosen[name]``, default 0)."""
    return {
        name: [1.0 if i == chosen.get(name, 0) else 0.0 for i in range(len(values))]
        for name, values in SHAPE_FACTORS.items()
    }


def test_shape_range_and_factors() -> None:
    data = make_shapes(64, resolution=16, seed=0)
    assert data.samples.shape == (64, 3, 16, 16)
    assert data.samples.dtype == torch.float32
    assert float(data.samples.min()) >= -1.0 and float(data.samples.max()) <= 1.0
    assert set(data.factors) == set(SHAPE_FACTORS)
    assert data.factor_values == SHAPE_FACTORS
    for name, values in data.factors.items():
        assert values.dtype == torch.int64 and values.shape == (64,)
        assert 0 <= int(values.min()) and int(values.max()) < len(SHAPE_FACTORS[name])


def test_same_seed_same_data_and_other_seed_differs() -> None:
    a, b = make_shapes(40, seed=3), make_shapes(40, seed=3)
    c = make_shapes(40, seed=4)
    assert torch.equal(a.samples, b.samples)
    assert a.fingerprint() == b.fingerprint()
    assert not torch.equal(a.samples, c.samples)
    assert a.fingerprint() != c.fingerprint()


def test_planted_colour_frequency_is_honoured() -> None:
    data = make_shapes(4000, seed=1, frequencies={"colour": [0.7, 0.1, 0.1, 0.1]})
    share = torch.bincount(data.factors["colour"], minlength=4).double() / 4000
    assert abs(float(share[0]) - 0.7) < 0.03
    assert (share[1:] - 0.1).abs().max() < 0.03
    assert data.source["frequencies"]["colour"] == [0.7, 0.1, 0.1, 0.1]  # type: ignore[index]


def test_forced_factors_come_back_as_labels() -> None:
    data = make_shapes(10, seed=0, frequencies=only(shape=2, colour=3, size=1, position=2, background=1))
    got = {name: set(values.tolist()) for name, values in data.factors.items()}
    assert got == {"shape": {2}, "colour": {3}, "size": {1}, "position": {2}, "background": {1}}


@pytest.mark.parametrize(
    "frequencies",
    [
        {"colour": [1.0, 1.0]},  # wrong length
        {"colour": [1.0, -0.5, 0.2, 0.3]},  # negative
        {"size": [0.0, 0.0]},  # sums to zero
        {"texture": [1.0]},  # unknown factor
    ],
)
def test_bad_frequencies_are_refused(frequencies: dict[str, list[float]]) -> None:
    with pytest.raises(DiffsightError) as info:
        make_shapes(4, frequencies=frequencies)
    assert next(iter(frequencies)) in str(info.value)


def test_resolution_below_16_is_refused() -> None:
    with pytest.raises(DiffsightError, match="resolution >= 16"):
        make_shapes(4, resolution=15)


@pytest.mark.parametrize("factor", sorted(SHAPE_FACTORS))
def test_each_factor_changes_the_image(factor: str) -> None:
    base = make_shapes(1, seed=0, jitter=False, frequencies=only()).samples
    again = make_shapes(1, seed=5, jitter=False, frequencies=only()).samples
    assert torch.equal(base, again)  # without jitter the factors alone decide the pixels
    for value in range(1, len(SHAPE_FACTORS[factor])):
        other = make_shapes(1, seed=0, jitter=False, frequencies=only(**{factor: value})).samples
        assert float((other - base).abs().max()) > 0.2, f"{factor}={SHAPE_FACTORS[factor][value]} looks the same"


def test_larger_resolution() -> None:
    data = make_shapes(3, resolution=32, seed=0)
    assert data.samples.shape == (3, 3, 32, 32)
