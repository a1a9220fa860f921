"""Factor readers: shipped classifiers as readers, the model -> reader lookup, and the mixture-component reader."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from diffsight.data.shapes import make_shapes
from diffsight.errors import DiffsightError, ShapeError
from diffsight.explain.factors import (
    ClassifierReader,
    ComponentReader,
    FactorReader,
    read_in_batches,
    reader_for_model,
)
from diffsight.metrics.classifier_io import shipped_classifier
from diffsight.models import load_model
from diffsight.oracles import GaussianMixtureOracle

SHAPES_FACTORS = ["shape", "colour", "size", "position", "background"]


def _mixture(d: int = 8, m: float = 2.0, std: float = 0.1) -> tuple[GaussianMixtureOracle, torch.Tensor]:
    mu = torch.ones(d, dtype=torch.float64) * m / d**0.5
    return GaussianMixtureOracle(torch.tensor([0.5, 0.5]), torch.stack([-mu, mu]), std**2), mu


def test_classifier_reader_reads_shipped_shapes_factors() -> None:
    reader = ClassifierReader(shipped_classifier("shapes"), name="classifier:shapes")
    assert isinstance(reader, FactorReader)
    assert list(reader.factors) == SHAPES_FACTORS
    assert reader.factors["colour"] == ["red", "green", "blue", "yellow"]
    data = make_shapes(24, seed=5)
    x = data.samples  # (24, 3, 16, 16) in [-1, 1]
    probs = reader(x)
    for f, names in reader.factors.items():
        assert probs[f].shape == (24, len(names))
        torch.testing.assert_close(probs[f].sum(1), torch.ones(24))
        # known answer: the shipped classifier reads the generator's own factors of clean shapes
        assert torch.equal(probs[f].argmax(1), data.factors[f]), f
    # inputs are clamped to [-1, 1]: scaling a saturated image changes nothing
    torch.testing.assert_close(reader(x * 5.0)["colour"], reader((x * 5.0).clamp(-1, 1))["colour"])


def test_reader_for_model_matches_training_data() -> None:
    shapes = load_model("shapes")
    reader = reader_for_model(shapes)
    assert reader is not None and list(reader.factors) == SHAPES_FACTORS
    digits = reader_for_model(load_model("digits"))
    assert digits is not None and list(digits.factors) == ["digit"] and len(digits.factors["digit"]) == 10
    # user data: no shipped classifier -> None
    info = {**shapes.info, "data": {**shapes.info["data"], "name": "my-product-photos"}}
    assert reader_for_model(dataclasses.replace(shapes, info=info)) is None
    # a shipped name but another image shape -> None (a shapes classifier cannot read 8x8 images)
    info = {**shapes.info, "event_shape": [1, 8, 8]}
    assert reader_for_model(dataclasses.replace(shapes, info=info)) is None


def test_component_reader_is_the_bayes_classifier_of_the_mixture() -> None:
    oracle, mu = _mixture()
    reader = ComponentReader(oracle, value_names=["minus", "plus"])
    x, comp = oracle.sample(400, generator=torch.Generator().manual_seed(0), return_components=True)
    probs = reader(x)["component"]
    assert probs.shape == (400, 2)
    torch.testing.assert_close(probs.sum(1), torch.ones(400))
    assert torch.equal(probs.argmax(1), comp)  # well separated: every draw is read correctly
    # closed form for two symmetric components: r_plus = sigmoid(2 mu.x / (std^2 + sigma^2))
    noisy = ComponentReader(oracle, sigma=1.5)
    expected = torch.sigmoid(2 * x.double() @ mu / (0.01 + 1.5**2)).float()
    torch.testing.assert_close(noisy(x)["component"][:, 1], expected, atol=1e-6, rtol=1e-5)


def test_read_in_batches_equals_one_call_and_checks_shapes() -> None:
    oracle, _ = _mixture()
    reader = ComponentReader(oracle)
    x = oracle.sample(50, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(read_in_batches(reader, x, 7)["component"], reader(x)["component"])

    class Broken:
        name = "broken"
        factors = {"component": ["0", "1", "2"]}  # says 3 values, returns 2

        def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return reader(x)

    with pytest.raises(ShapeError, match="expected"):
        read_in_batches(Broken(), x)
    with pytest.raises(DiffsightError, match="value_names"):
        ComponentReader(oracle, value_names=["a"])
