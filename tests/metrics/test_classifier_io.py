"""Saving, loading and the shipped classifiers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from diffsight.data import load_digits, make_shapes
from diffsight.errors import DiffsightError, UnknownNameError
from diffsight.metrics import FactorClassifier, load_classifier, save_classifier, shipped_classifier, split_indices


def _saved(tmp_path: Path) -> tuple[FactorClassifier, Path]:
    torch.manual_seed(0)
    model = FactorClassifier(3, 16, {"shape": 3, "size": 2}, width=8, feature_dim=16).eval()
    return model, save_classifier(model, tmp_path / "clf", {"val_accuracy": {"shape": 0.5}})


def test_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    model, folder = _saved(tmp_path)
    loaded = load_classifier(folder)
    x = torch.randn(4, 3, 16, 16)
    assert not loaded.training and loaded.config == model.config
    assert loaded.report == {"val_accuracy": {"shape": 0.5}}
    with torch.no_grad():
        for name in model.factors:
            torch.testing.assert_close(loaded(x)[name], model(x)[name], rtol=0, atol=0)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]  # no temp files left
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in folder.iterdir())  # readable by others, as shipped


def test_missing_or_corrupted_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DiffsightError, match="no classifier folder"):
        load_classifier(tmp_path / "nowhere")
    _, folder = _saved(tmp_path)
    weights = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(DiffsightError, match="corrupted"):
        load_classifier(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(DiffsightError, match="lacks model.safetensors"):
        load_classifier(folder)


def test_weights_that_do_not_match_the_config_are_refused(tmp_path: Path) -> None:
    _, folder = _saved(tmp_path)
    meta = json.loads((folder / "config.json").read_text())
    meta["config"]["width"] = 16
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(DiffsightError, match="do not match config.json"):
        load_classifier(folder)


def test_unknown_shipped_name_lists_the_available_ones() -> None:
    with pytest.raises(UnknownNameError, match="digits, shapes"):
        shipped_classifier("mnist")


def test_shipped_digits_classifier_is_accurate_on_digits_it_never_saw() -> None:
    model = shipped_classifier("digits")
    data = load_digits()
    _, val = split_indices(len(data), model.report["val_fraction"], model.report["seed"])
    with torch.no_grad():
        accuracy = (model(data.samples[val])["digit"].argmax(1) == data.labels[val]).double().mean()
    assert accuracy >= 0.95


def test_shipped_shapes_classifier_reads_every_factor_of_fresh_shapes() -> None:
    model = shipped_classifier("shapes")
    assert model.factors == ["shape", "colour", "size", "position", "background"]  # head order survives saving
    data = make_shapes(1000, seed=777)
    with torch.no_grad():
        logits = model(data.samples)
    for name in ["shape", "colour", "size", "position", "background"]:
        assert (logits[name].argmax(1) == data.factors[name]).double().mean() >= 0.98, name
