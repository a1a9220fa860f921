"""evaluate_samples on real digits, noise and a mode-dropped set: the metrics rank them as they should."""

from __future__ import annotations

import json

import pytest
import torch

from diffsight.data import TrainingData, load_digits
from diffsight.errors import DiffsightError, ShapeError
from diffsight.metrics import FactorClassifier, evaluate_samples, format_quality, shipped_classifier, split_indices


@pytest.fixture(scope="module")
def digits() -> TrainingData:
    return load_digits()


@pytest.fixture(scope="module")
def classifier() -> FactorClassifier:
    return shipped_classifier("digits")


@pytest.fixture(scope="module")
def thirds(digits: TrainingData) -> tuple[TrainingData, TrainingData, TrainingData]:
    """(reference, held-out samples, floor): three disjoint random thirds of the digits."""
    perm = torch.randperm(len(digits), generator=torch.Generator().manual_seed(0))
    return digits.subset(perm[:600]), digits.subset(perm[600:1200]), digits.subset(perm[1200:])


@pytest.fixture(scope="module")
def real_report(thirds: tuple, classifier: FactorClassifier) -> dict:
    reference, held, floor = thirds
    return evaluate_samples(held.samples, reference, classifier, floor=floor)


def test_real_held_out_data_scores_near_its_floor(real_report: dict) -> None:
    assert real_report["fd"] < 2.0 * real_report["fd_floor"] + 1.0
    assert real_report["precision"] >= 0.8 and real_report["recall"] >= 0.8
    assert real_report["factors"]["digit"]["tv"] < 0.1
    assert real_report["n_floor"] == 597 and "597" in real_report["notes"][0]  # the floor set is smaller than n
    json.dumps(real_report)  # JSON-ready


def test_noise_scores_far_worse(thirds: tuple, classifier: FactorClassifier, real_report: dict) -> None:
    reference, _, floor = thirds
    noise = torch.rand(600, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    report = evaluate_samples(noise, reference, classifier, floor=floor)
    assert report["fd"] > 10 * real_report["fd"]
    assert report["recall"] < 0.3 and report["precision"] < real_report["precision"] - 0.3
    assert report["factors"]["digit"]["confident_share"] < real_report["factors"]["digit"]["confident_share"]


def test_mode_dropping_costs_recall_and_shows_in_the_histogram(
    thirds: tuple, classifier: FactorClassifier, real_report: dict
) -> None:
    reference, held, floor = thirds
    low_digits = held.samples[held.labels < 5]
    report = evaluate_samples(low_digits, reference, classifier, floor=floor)
    assert report["n"] == report["n_floor"] == low_digits.shape[0]  # floor taken at the same n
    assert report["recall"] < real_report["recall"] - 0.25
    assert report["precision"] > 0.8  # what is there is still realistic
    assert report["factors"]["digit"]["tv"] > 0.3
    assert report["fd"] > 5 * report["fd_floor"]


def test_requested_labels_give_the_classifier_accuracy(digits: TrainingData, classifier: FactorClassifier) -> None:
    train, val = split_indices(len(digits), 0.2, 0)  # the shipped classifier never saw `val`
    held = digits.subset(val)
    report = evaluate_samples(held.samples, digits.subset(train), classifier, requested={"digit": held.labels})
    digit = report["factors"]["digit"]
    assert digit["accuracy"] == pytest.approx(digit["classifier_val_accuracy"], abs=0.02)
    assert "fd_floor" not in report
    shuffled = held.labels[torch.randperm(len(held), generator=torch.Generator().manual_seed(2))]
    wrong = evaluate_samples(held.samples, digits, classifier, requested={"digit": shuffled})
    assert wrong["factors"]["digit"]["accuracy"] < 0.3


def test_format_prints_every_fd_beside_its_floor(real_report: dict) -> None:
    text = format_quality(real_report)
    assert f"real-vs-real floor at n=597: {real_report['fd_floor']:.3g}" in text
    assert "digit: TV" in text
    no_floor = {k: v for k, v in real_report.items() if not k.endswith("_floor")}
    assert "no real-vs-real floor" in format_quality(no_floor)


def test_bad_inputs(thirds: tuple, classifier: FactorClassifier) -> None:
    reference, held, _ = thirds
    with pytest.raises(ShapeError, match="fit the classifier"):
        evaluate_samples(torch.zeros(10, 3, 16, 16), reference, classifier)
    with pytest.raises(DiffsightError, match="NaN"):
        evaluate_samples(torch.full((10, 1, 8, 8), float("nan")), reference, classifier)
    with pytest.raises(DiffsightError, match="no head"):
        evaluate_samples(held.samples, reference, classifier, requested={"colour": held.labels})
    with pytest.raises(ShapeError, match="one label per sample"):
        evaluate_samples(held.samples, reference, classifier, requested={"digit": held.labels[:5]})
