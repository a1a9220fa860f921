"""Bias audit: hand-computed statistics on fixed label arrays, the planted 80%-red skew, an unbiased control."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from diffsight.audit.bias import BiasResult, bias_audit, bootstrap_histograms, chi_square, factor_bias
from diffsight.errors import DiffsightError
from diffsight.models import load_model

pytestmark = pytest.mark.usefixtures("one_thread")

UNIFORM3 = [1 / 3, 1 / 3, 1 / 3]


# -- the statistics core on fixed labels (no model) -------------------------------------------------------------
def test_tv_and_chi_square_match_hand_computation() -> None:
    labels = np.array([0] * 60 + [1] * 20 + [2] * 20)
    b = factor_bias("f", labels, UNIFORM3, bootstrap=0)
    # shares (0.6, 0.2, 0.2): TV = 1/2 (0.2667 + 0.1333 + 0.1333) = 0.26667
    assert b.tv == pytest.approx(0.8 / 3, abs=1e-12)
    # E = 33.33 each: X^2 = (26.67^2 + 2 * 13.33^2) / 33.33 = 32; chi2 with 2 dof has survival exp(-x/2)
    assert b.chi2 == pytest.approx(32.0, rel=1e-12)
    assert b.p_value == pytest.approx(math.exp(-16.0), rel=1e-9)
    assert b.dof == 2 and b.skewed and b.over_represented == "0"


def test_exact_match_is_not_skewed_and_tiny_effects_are_not_flagged() -> None:
    b = factor_bias("f", np.array([0, 0, 1, 2] * 25), [0.5, 0.25, 0.25], bootstrap=0)
    assert b.chi2 == 0.0 and b.p_value == pytest.approx(1.0) and b.tv == 0.0 and not b.skewed
    # 51% vs 49% on 100k items: significant (X^2 = 2 * 1000^2 / 50000 = 40, p = erfc(sqrt(20)))
    # but TV 0.01 is below the minimum effect
    big = factor_bias("f", np.array([0] * 51_000 + [1] * 49_000), [0.5, 0.5], bootstrap=0)
    assert big.chi2 == pytest.approx(40.0) and big.p_value == pytest.approx(math.erfc(math.sqrt(20.0)), rel=1e-6)
    assert big.tv == pytest.approx(0.01) and not big.skewed


def test_chi_square_with_a_forbidden_value() -> None:
    assert chi_square([5, 0, 5], [0.5, 0.0, 0.5]) == (0.0, 1.0, 1)
    stat, p, dof = chi_square([5, 1, 4], [0.5, 0.0, 0.5])
    assert math.isinf(stat) and p == 0.0 and dof == 1


def test_bootstrap_intervals() -> None:
    gen = torch.Generator().manual_seed(0)
    boot = bootstrap_histograms(np.array([0, 1, 1, 2]), 3, 500, gen)
    assert (
        boot.shape == (500, 3)
        and np.allclose(boot.sum(1), 1.0)
        and np.allclose(boot.mean(0), [0.25, 0.5, 0.25], atol=0.03)
    )
    # share 0.5 of n = 400: normal-approximation interval 0.5 +- 1.96 * 0.025 = [0.451, 0.549]
    b = factor_bias("f", np.array([0, 1] * 200), [0.5, 0.5], bootstrap=2000, seed=3)
    assert b.share_low[0] == pytest.approx(0.451, abs=0.012) and b.share_high[0] == pytest.approx(0.549, abs=0.012)
    assert b.tv_low <= b.tv + 1e-12 <= b.tv_high + 1e-12
    again = factor_bias("f", np.array([0, 1] * 200), [0.5, 0.5], bootstrap=2000, seed=3)
    assert again.share_low == b.share_low  # seeded
    const = factor_bias("f", np.zeros(50, dtype=np.int64), [0.5, 0.5], bootstrap=200)
    assert const.share_low[0] == const.share_high[0] == 1.0 and const.tv_low == const.tv_high == 0.5
    with pytest.raises(DiffsightError):
        factor_bias("f", np.array([0, 3]), UNIFORM3)
    with pytest.raises(DiffsightError):
        factor_bias("f", np.array([0, 1]), [0.5, 0.6])


# -- the planted skew and the unbiased control ------------------------------------------------------------------
@pytest.fixture(scope="module")
def red() -> tuple[object, torch.Tensor]:
    model = load_model("shapes-red")
    with torch.no_grad():
        from diffsight.sampling import generate_samples

        samples = generate_samples(
            model.denoiser, model.event_shape, 400, steps=20, generator=torch.Generator().manual_seed(0)
        )
    return model, samples


@pytest.fixture(scope="module")
def red_uniform(red: tuple[object, torch.Tensor]) -> BiasResult:
    model, samples = red
    return bias_audit(model, samples=samples, target="uniform", steps=20, locate=["colour"], bootstrap=500)  # type: ignore[arg-type]


def test_red_share_and_skew_against_uniform(red_uniform: BiasResult) -> None:
    colour = red_uniform["colour"]
    share, lo, hi = colour.share("red")
    assert 0.7 <= lo <= share <= hi <= 0.9, (lo, share, hi)
    assert colour.skewed and colour.over_represented == "red" and colour.tv > 0.4
    json.dumps(red_uniform.to_json())  # JSON-ready
    assert "colour: SKEWED" in red_uniform.summary()


def test_red_quality_per_group(red_uniform: BiasResult) -> None:
    quality = red_uniform["colour"].quality
    assert set(quality) == {"red", "green", "blue", "yellow"}
    assert quality["red"]["n"] > 250 and quality["red"]["fd"] >= 0.0 and "fd_floor" in quality["red"]


def test_locate_gives_a_decided_step(red_uniform: BiasResult) -> None:
    decided = red_uniform["colour"].decided
    assert decided is not None and decided["value"] == "red" and len(decided["steps"]) == 3
    assert 0 <= decided["median_step"] < decided["num_steps"] == 20
    assert red_uniform["size"].decided is None  # not asked for


def test_red_matches_its_training_distribution(red: tuple[object, torch.Tensor]) -> None:
    model, samples = red
    audit = bias_audit(model, samples=samples, target="training", quality=False, bootstrap=200)  # type: ignore[arg-type]
    colour = audit["colour"]
    assert colour.target[0] == pytest.approx(0.8, abs=0.01)
    assert not colour.skewed and colour.tv < 0.05


def test_unbiased_shapes_not_flagged_on_colour() -> None:
    model = load_model("shapes")
    audit = bias_audit(model, n=300, steps=20, target="uniform", quality=False, bootstrap=200)
    colour = audit["colour"]
    assert not colour.skewed, colour.summary()
    assert colour.share("red")[2] < 0.4
