"""The 2-D toy datasets: shapes, seeding, scale, and eight_gaussians against its exact mixture."""

from __future__ import annotations

import math

import pytest
import torch

from diffsight.data import (
    EIGHT_GAUSSIANS_RADIUS,
    EIGHT_GAUSSIANS_STD,
    TOY2D,
    checkerboard,
    eight_gaussians,
    eight_gaussians_means,
    eight_gaussians_mixture,
    make_toy2d,
)
from diffsight.errors import DiffsightError, UnknownNameError

NAMES = sorted(TOY2D)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_and_dtype(name: str, dtype: torch.dtype) -> None:
    x = TOY2D[name](257, generator=gen(0), dtype=dtype)
    assert x.shape == (257, 2)
    assert x.dtype == dtype
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_points_and_other_seed_differs(name: str) -> None:
    a = make_toy2d(name, 500, generator=gen(3))
    b = make_toy2d(name, 500, generator=gen(3))
    c = make_toy2d(name, 500, generator=gen(4))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("name", NAMES)
def test_dtype_does_not_change_the_draw(name: str) -> None:
    lo = make_toy2d(name, 300, generator=gen(1), dtype=torch.float32)
    hi = make_toy2d(name, 300, generator=gen(1), dtype=torch.float64)
    torch.testing.assert_close(lo, hi.float())


@pytest.mark.parametrize("name", NAMES)
def test_make_toy2d_is_the_registered_function(name: str) -> None:
    assert torch.equal(make_toy2d(name, 100, generator=gen(7)), TOY2D[name](100, generator=gen(7)))


@pytest.mark.parametrize("name", NAMES)
def test_centred_with_roughly_unit_std(name: str) -> None:
    x = make_toy2d(name, 40_000, generator=gen(0), dtype=torch.float64)
    assert x.mean(0).abs().max() < 0.05
    std = x.std(0)
    assert std.min() > 0.6 and std.max() < 1.3
    assert abs(float(x.var(0).mean()) - 1.0) < 0.05  # the isotropic scale makes the mean variance 1


def test_unknown_name_lists_the_choices() -> None:
    with pytest.raises(UnknownNameError) as info:
        make_toy2d("spiral", 10)
    message = str(info.value)
    assert "spiral" in message
    for name in NAMES:
        assert name in message
    assert isinstance(info.value, KeyError)  # callers who only know the standard library still catch it


@pytest.mark.parametrize("n", [0, -3, 2.5, True, "10"])
@pytest.mark.parametrize("name", NAMES)
def test_bad_n_is_a_clear_error(name: str, n: object) -> None:
    with pytest.raises(DiffsightError, match="positive integer"):
        make_toy2d(name, n)  # type: ignore[arg-type]


def test_checkerboard_lies_on_one_colour_of_squares() -> None:
    x = checkerboard(5000, generator=gen(0), dtype=torch.float64) / (math.sqrt(3) / 2)  # back to [-2, 2]^2
    assert x.abs().max() <= 2
    parity = torch.remainder(torch.floor(x[:, 0]) + torch.floor(x[:, 1]), 2)
    assert torch.all(parity == 0)


# --- eight_gaussians and its mixture --------------------------------------------------------------------------


def test_eight_gaussians_geometry() -> None:
    means = eight_gaussians_means()
    assert means.shape == (8, 2)
    torch.testing.assert_close(means.norm(dim=1), torch.full((8,), EIGHT_GAUSSIANS_RADIUS, dtype=torch.float64))
    assert math.isclose(EIGHT_GAUSSIANS_RADIUS**2 / 2 + EIGHT_GAUSSIANS_STD**2, 1.0)
    mixture = eight_gaussians_mixture()
    got = torch.stack([c.mean for c in mixture.components])
    torch.testing.assert_close(got, means)
    for c in mixture.components:
        torch.testing.assert_close(c.cov, EIGHT_GAUSSIANS_STD**2 * torch.eye(2, dtype=torch.float64))
    torch.testing.assert_close(mixture.log_weights.exp(), torch.full((8,), 1 / 8, dtype=torch.float64))


def test_eight_gaussians_are_draws_of_the_mixture() -> None:
    mixture = eight_gaussians_mixture()
    x = eight_gaussians(3000, generator=gen(5), dtype=torch.float64)
    torch.testing.assert_close(x, mixture.sample(3000, generator=gen(5), dtype=torch.float64))


@pytest.mark.parametrize("std", [EIGHT_GAUSSIANS_STD, 0.05, 0.4])
def test_eight_gaussians_moments_and_likelihood_match_the_mixture(std: float) -> None:
    n = 40_000
    mixture = eight_gaussians_mixture(std)
    x = eight_gaussians(n, generator=gen(11), dtype=torch.float64, std=std)
    ref = mixture.sample(n, generator=gen(12), dtype=torch.float64)  # an independent draw of the oracle
    # 1. moments: exactly mean 0 and cov (R^2 / 2 + std^2) I; both samples agree with it and with each other
    var = EIGHT_GAUSSIANS_RADIUS**2 / 2 + std**2
    tol = 5 * math.sqrt(2 / n) * var  # about 5 standard errors of a sample variance
    for sample in (x, ref):
        assert sample.mean(0).abs().max() < 5 * math.sqrt(var / n)
        torch.testing.assert_close(torch.cov(sample.T), var * torch.eye(2, dtype=torch.float64), atol=tol, rtol=0)
    # 2. no log-likelihood deficit: the mean log-density under the mixture equals the oracle's own draws'
    lp, lp_ref = mixture.log_prob(x), mixture.log_prob(ref)
    se = math.sqrt((lp.var() + lp_ref.var()) / n)
    assert abs(float(lp.mean() - lp_ref.mean())) < 5 * se
    # 3. every point sits near one mean, and the eight modes are equally used
    d, mode = torch.cdist(x, eight_gaussians_means()).min(1)
    assert float(d.max()) < 7 * std
    counts = torch.bincount(mode, minlength=8).double() / n
    assert float((counts - 1 / 8).abs().max()) < 0.01


def test_mixture_rejects_bad_std() -> None:
    for std in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(DiffsightError, match="std"):
            eight_gaussians_mixture(std)
