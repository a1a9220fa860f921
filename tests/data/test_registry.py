"""load_data: built-in names, toy names, folders and array files, and the error for anything else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffsight.data import BUILTIN_DATASETS, load_data
from diffsight.errors import DiffsightError


def test_digits() -> None:
    data = load_data("digits")
    assert data.name == "digits" and data.samples.shape == (1797, 1, 8, 8)
    assert load_data("digits", resolution=8).samples.shape == (1797, 1, 8, 8)


def test_digits_at_another_resolution_is_refused() -> None:
    with pytest.raises(DiffsightError) as info:
        load_data("digits", resolution=16)
    message = str(info.value)
    assert "8x8" in message and "16" in message and "--resolution" in message


def test_shapes_with_settings() -> None:
    options = {"frequencies": {"colour": [1.0, 0.0, 0.0, 0.0]}}
    data = load_data("shapes", n=30, resolution=20, seed=2, options=options)
    assert data.samples.shape == (30, 3, 20, 20)
    assert set(data.factors["colour"].tolist()) == {0}
    assert data.source["seed"] == 2
    assert torch.equal(data.samples, load_data("shapes", n=30, resolution=20, seed=2, options=options).samples)
    assert not torch.equal(data.samples, load_data("shapes", n=30, resolution=20, seed=3, options=options).samples)


def test_toy2d_by_full_and_bare_name() -> None:
    full = load_data("toy2d:moons", n=200, seed=1)
    bare = load_data("moons", n=200, seed=1)
    assert full.samples.shape == (200, 2) and full.name == "toy2d:moons"
    assert torch.equal(full.samples, bare.samples)
    assert not torch.equal(full.samples, load_data("moons", n=200, seed=2).samples)


def test_image_folder_path(tmp_path: Path) -> None:
    for cls, value in (("a", 0), ("b", 255)):
        (tmp_path / cls).mkdir()
        Image.fromarray(np.full((12, 16), value, dtype=np.uint8)).save(tmp_path / cls / "img.png")
    data = load_data(tmp_path, resolution=8, channels=3, options={"crop": "none"})
    assert data.samples.shape == (2, 3, 8, 8)
    assert data.class_names == ("a", "b")
    assert data.source["crop"] == "none"
    assert load_data(str(tmp_path), resolution=8).source["crop"] == "center"


def test_npz_path(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, feats=np.ones((5, 3)), cls=np.array([1, 2, 1, 2, 1]))
    data = load_data(str(path), options={"key": "feats", "labels_key": "cls"})
    assert data.samples.shape == (5, 3) and data.class_names == ("1", "2")


def test_unknown_name_lists_the_built_ins() -> None:
    with pytest.raises(DiffsightError) as info:
        load_data("mnist")
    message = str(info.value)
    assert "'mnist'" in message
    for name in BUILTIN_DATASETS:
        assert name in message
    assert "PNG/JPEG" in message and ".npz" in message


def test_other_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("1,2\n")
    with pytest.raises(DiffsightError, match="nor a .npy/.npz"):
        load_data(path)


def test_holdout_split_is_seeded_disjoint_and_complete() -> None:
    train = load_data("digits", options={"holdout": 0.1})
    held = load_data("digits", options={"holdout": 0.1, "split": "heldout"})
    every = load_data("digits", options={"holdout": 0.1, "split": "all"})
    assert (len(train), len(held), len(every)) == (1617, 180, 1797)
    assert train.source["split"] == "train" and held.source["holdout"] == 0.1
    rows = {tuple(x.flatten().tolist()) + (int(y),) for x, y in zip(every.samples, every.labels, strict=True)}
    got = [
        tuple(x.flatten().tolist()) + (int(y),) for d in (train, held) for x, y in zip(d.samples, d.labels, strict=True)
    ]
    assert len(got) == 1797 and set(got) == rows  # together they are the whole set (duplicates kept)
    assert load_data("digits", options={"holdout": 0.1}).fingerprint() == train.fingerprint()  # same split again
    other = load_data("digits", options={"holdout": 0.1, "holdout_seed": 1, "split": "heldout"})
    assert other.fingerprint() != held.fingerprint()
    with pytest.raises(DiffsightError, match="holdout must be a fraction"):
        load_data("digits", options={"holdout": 1.5})
    with pytest.raises(DiffsightError, match="needs a holdout fraction"):
        load_data("digits", options={"split": "heldout"})
