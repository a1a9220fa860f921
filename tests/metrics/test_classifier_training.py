"""train_classifier: a short run on a small subset, and the seeded split."""

from __future__ import annotations

import pytest
import torch

from diffsight.data import load_digits
from diffsight.errors import DiffsightError
from diffsight.metrics import FactorClassifier, split_indices, train_classifier


def test_short_training_runs_and_reports() -> None:
    data = load_digits().subset(slice(0, 300))
    model, report = train_classifier(data, epochs=3, batch_size=64, seed=1, progress=False)
    assert isinstance(model, FactorClassifier) and not model.training
    assert report["n_train"] == 240 and report["n_val"] == 60 and report["epochs"] == 3 and report["seed"] == 1
    assert set(report["val_accuracy"]) == {"digit"} and 0.0 <= report["val_accuracy"]["digit"] <= 1.0
    assert report["val_accuracy"]["digit"] > 0.3  # well above chance (0.1) after three short epochs
    assert model.report is report
    assert model.config["factor_values"]["digit"][3] == "3"


def test_split_is_seeded_disjoint_and_complete() -> None:
    train, val = split_indices(100, 0.2, seed=3)
    again_train, _ = split_indices(100, 0.2, seed=3)
    assert torch.equal(train, again_train) and val.numel() == 20
    assert sorted(torch.cat([train, val]).tolist()) == list(range(100))


def test_unknown_factor_is_refused() -> None:
    with pytest.raises(DiffsightError, match="no ground truth"):
        train_classifier(load_digits().subset(slice(0, 50)), factors=["colour"], progress=False)
