"""Scoring inputs with a loaded model: bits/dim with standard errors, surprise maps that add up, class information."""

from __future__ import annotations

import math

import pytest
import torch

from diffsight.data import load_data
from diffsight.explain.likelihood import LikelihoodMaps, data_levels, score_inputs
from diffsight.models import load_model
from diffsight.trace import record_trace

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    return load_model("digits")


def test_levels_of_the_shipped_data(digits) -> None:
    assert data_levels(digits) == 17 and data_levels(load_model("shapes")) is None


def test_digits_score_below_noise_and_maps_add_up(digits) -> None:
    real = load_data("digits").samples[:8]
    g = torch.Generator().manual_seed(0)
    noise = torch.round((torch.rand(8, 1, 8, 8, generator=g) * 2) * 8) / 8 - 1  # on the 17-level grid
    r = score_inputs(digits, torch.cat([real, noise]), points=48, seed=0)
    assert r.levels == 17 and r.nfe_per_image == 48 and r.bits_per_dim.shape == (16,)
    assert (r.bits_per_dim_stderr > 0).all() and torch.isfinite(r.bits_per_dim).all()
    assert r.bits_per_dim[:8].max() < r.bits_per_dim[8:].min()  # every digit beats every noise image
    assert r.bits_per_dim[:8].mean() < math.log2(17)  # better than a uniform model of the 17 levels
    # the surprise map (bits per pixel) sums to the image's bits: bits/dim x 64
    assert torch.allclose(r.surprise.sum((1, 2)), r.bits_per_dim * 64, rtol=1e-4, atol=1e-3)
    assert r.gammas.shape == r.error_curve.shape == (16, 48) and (r.gammas.diff(dim=1) >= 0).all()
    again = score_inputs(digits, torch.cat([real, noise]), points=48, seed=0)
    assert torch.equal(again.bits_per_dim, r.bits_per_dim)  # seeded


def test_class_information_is_larger_for_the_true_class(digits) -> None:
    data = load_data("digits")
    x, y = data.samples[:12], data.labels[:12]
    true = score_inputs(digits, x, labels=y, points=48, seed=1)
    wrong = score_inputs(digits, x, labels=(y + 5) % 10, points=48, seed=1)
    assert true.pmi is not None and wrong.pmi is not None and true.pmi_map is not None
    assert true.pmi.mean() > 0 and true.pmi.mean() > wrong.pmi.mean() + 3 * float(true.pmi_stderr.mean())
    assert torch.allclose(true.pmi_map.sum((1, 2)), true.pmi, rtol=1e-4, atol=1e-3)
    with pytest.raises(Exception, match="unconditional"):
        score_inputs(load_model("shapes"), load_data("shapes", n=2).samples, labels=torch.tensor([0, 1]), points=8)


def test_the_explainer_scores_a_traces_sample(digits) -> None:
    with torch.no_grad():
        trace = record_trace(digits, seed=0, labels=4, steps=8)
    e = LikelihoodMaps(trace, digits, points=32).explain()
    assert e.method == "likelihood" and e.trace_id == trace.id
    assert e.values["surprise"].shape == (8, 8) and "pmi_map" in e.values and "bits/dim" in e.summary
    unconditional = LikelihoodMaps(record_trace(digits, seed=0, steps=8), digits, points=16).explain()
    assert "pmi" not in unconditional.values
