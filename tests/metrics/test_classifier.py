"""FactorClassifier: shapes, differentiability, input checks."""

from __future__ import annotations

import pytest
import torch

from diffsight.errors import DiffsightError, ShapeError
from diffsight.metrics import FactorClassifier


@pytest.mark.parametrize(("channels", "resolution"), [(1, 8), (3, 16), (3, 28)])
def test_forward_features_and_probabilities_have_the_right_shapes(channels: int, resolution: int) -> None:
    model = FactorClassifier(channels, resolution, {"shape": 3, "colour": 4}, feature_dim=16)
    x = torch.rand(5, channels, resolution, resolution) * 2 - 1
    assert model.features(x).shape == (5, 16)
    logits = model(x)
    assert {k: tuple(v.shape) for k, v in logits.items()} == {"shape": (5, 3), "colour": (5, 4)}
    probs = model.probabilities(x)
    torch.testing.assert_close(probs["colour"].sum(1), torch.ones(5))


def test_gradients_flow_to_the_input_and_no_grad_works() -> None:
    model = FactorClassifier(1, 8, {"digit": 10}).eval()
    x = torch.randn(2, 1, 8, 8, requires_grad=True)
    model(x)["digit"][:, 3].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with torch.no_grad():
        assert not model(x)["digit"].requires_grad


def test_config_rebuilds_the_same_architecture() -> None:
    model = FactorClassifier(3, 16, {"size": 2}, width=8, factor_values={"size": ["small", "large"]})
    clone = FactorClassifier(**model.config)
    assert clone.config == model.config
    assert {k: v.shape for k, v in clone.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_wrong_inputs_and_arguments_raise() -> None:
    model = FactorClassifier(1, 8, {"digit": 10})
    with pytest.raises(ShapeError, match=r"\(B, 1, 8, 8\)"):
        model(torch.zeros(2, 3, 16, 16))
    with pytest.raises(DiffsightError, match="at least one head"):
        FactorClassifier(1, 8, {})
    with pytest.raises(DiffsightError, match="K >= 2"):
        FactorClassifier(1, 8, {"digit": 1})
    with pytest.raises(DiffsightError, match="names 2 values"):
        FactorClassifier(1, 8, {"digit": 3}, factor_values={"digit": ["a", "b"]})
