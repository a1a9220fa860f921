"""evaluate_model on denoisers with known behaviour: a memorizing oracle scores at the real-vs-real floor."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from diffsight.data import load_data
from diffsight.errors import DiffsightError
from diffsight.metrics.model_eval import evaluate_model, training_data_of
from diffsight.models.folder import LoadedModel
from diffsight.oracles import EmpiricalOracle, GaussianOracle


def as_model(denoiser: torch.nn.Module, data_name: str, event_shape: tuple[int, ...], **data: object) -> LoadedModel:
    denoiser.sigma_min, denoiser.sigma_max = 0.002, 80.0  # finite range for the Karras schedule
    dataset = load_data(data_name, **data)
    info = {
        "name": "oracle",
        "kind": "edm",
        "event_shape": list(event_shape),
        "data": {"fingerprint": dataset.fingerprint()},
        "training": {"config": {"data": {"name": data_name, **data}}},
    }
    return LoadedModel(denoiser=denoiser, info=info, path=Path("."))


@pytest.fixture(scope="module")
def digits_flat() -> torch.Tensor:
    return load_data("digits").samples


def test_a_memorizing_oracle_scores_at_the_floor_and_a_gaussian_fit_does_not(digits_flat: torch.Tensor) -> None:
    memorizer = as_model(EmpiricalOracle(digits_flat), "digits", (1, 8, 8))
    report = evaluate_model(memorizer, n=300, steps=12, sampler="heun")
    assert report["features"] == "shipped digits classifier"
    assert report["fd"] < 1.5 * report["fd_floor"]
    assert report["precision"] > 0.85 and report["recall"] > 0.8
    assert report["factors"]["digit"]["tv"] < 0.1

    flat = digits_flat.reshape(len(digits_flat), -1)
    cov = torch.cov(flat.T) + 1e-3 * torch.eye(64)
    gaussian = GaussianOracle(flat.mean(0), cov)

    class Reshaped(torch.nn.Module):  # the Gaussian oracle works on vectors; the model sees images
        def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: object = None) -> torch.Tensor:
            return gaussian(x.reshape(len(x), -1), sigma).reshape(x.shape)

    fit = evaluate_model(as_model(Reshaped(), "digits", (1, 8, 8)), n=300, steps=12, sampler="heun")
    assert fit["fd"] > 5 * report["fd"]
    assert fit["precision"] < report["precision"] - 0.3


def test_vector_data_is_scored_on_raw_features() -> None:
    data = load_data("toy2d:moons", n=1000)
    report = evaluate_model(as_model(EmpiricalOracle(data.samples), "toy2d:moons", (2,), n=1000), n=200, steps=10)
    assert report["features"] == "pixels" and report["n"] == 200
    assert report["precision"] > 0.8 and report["fd"] < 0.1


def test_changed_data_is_detected() -> None:
    model = as_model(EmpiricalOracle(torch.zeros(4, 2)), "toy2d:moons", (2,), n=1000)
    model.info["data"]["fingerprint"] = "0" * 64
    with pytest.raises(DiffsightError, match="fingerprint differs"):
        training_data_of(model)
    del model.info["training"]
    with pytest.raises(DiffsightError, match="does not record its training data"):
        training_data_of(model)


def test_solver_check_and_card_metrics(digits_flat: torch.Tensor) -> None:
    from diffsight.metrics.model_eval import card_metrics, format_model_eval

    memorizer = as_model(EmpiricalOracle(digits_flat), "digits", (1, 8, 8))
    report = evaluate_model(memorizer, n=200, steps=12, sampler="heun", reference_steps=24)
    check = report["solver_check"]
    assert check["fd_reference"] > 0 and check["relative_difference"] < 0.5
    assert "solver check" in format_model_eval(report)
    card = card_metrics(report)
    assert card["n"] == 200 and card["steps"] == 12 and "digit_tv" in card and "fd_heun_reference" in card
