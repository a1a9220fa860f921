"""Checkpoints round-trip exactly and refuse truncated, altered or incomplete files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from diffsight.training.checkpoint import (
    Checkpoint,
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)


def _checkpoint(step: int) -> Checkpoint:
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    g = torch.Generator().manual_seed(step)
    return Checkpoint(
        step=step,
        model=dict(model.state_dict()),
        ema={k: v * 2 for k, v in model.state_dict().items()},
        optimizer=opt.state_dict(),
        rng={"noise": g.get_state()},
        meta={"config": {"a": 1}, "note": "x"},
    )


def test_round_trip_is_exact(tmp_path: Path) -> None:
    saved = _checkpoint(7)
    path = save_checkpoint(tmp_path, saved)
    loaded = load_checkpoint(path)
    assert loaded.step == 7 and loaded.meta == saved.meta
    for key, value in saved.model.items():
        assert torch.equal(loaded.model[key], value)
    for key, value in saved.ema.items():
        assert torch.equal(loaded.ema[key], value)
    assert torch.equal(loaded.rng["noise"], saved.rng["noise"])
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    opt.load_state_dict(loaded.optimizer)
    for index, state in saved.optimizer["state"].items():
        for name, value in state.items():
            assert torch.equal(opt.state_dict()["state"][index][name], value)
    assert opt.state_dict()["param_groups"][0]["lr"] == 1e-3


def test_keeps_only_the_newest(tmp_path: Path) -> None:
    for step in (5, 10, 15, 20):
        save_checkpoint(tmp_path, _checkpoint(step), keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000015", "step-00000020"]
    assert latest_checkpoint(tmp_path).name == "step-00000020"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_temporary_folders_of_an_interrupted_write_are_ignored(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, _checkpoint(5))
    (tmp_path / ".step-00000010.tmp-abc").mkdir()
    assert latest_checkpoint(tmp_path).name == "step-00000005"
    assert latest_checkpoint(tmp_path / "missing") is None


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "no_manifest", "bad_manifest"])
def test_damaged_checkpoints_are_refused_with_the_file_named(tmp_path: Path, damage: str) -> None:
    path = save_checkpoint(tmp_path, _checkpoint(3))
    target = path / "optimizer.safetensors"
    data = target.read_bytes()
    if damage == "truncate":
        target.write_bytes(data[: len(data) // 2])
        expected = "optimizer.safetensors is truncated"
    elif damage == "flip":
        target.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
        expected = "optimizer.safetensors is corrupted"
    elif damage == "delete":
        target.unlink()
        expected = "missing optimizer.safetensors"
    elif damage == "no_manifest":
        (path / "manifest.json").unlink()
        expected = "incomplete"
    else:
        (path / "manifest.json").write_text("{not json")
        expected = "manifest.json is corrupted"
    with pytest.raises(CheckpointError, match=expected) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "delete" in str(info.value)


def test_manifest_lists_hashes_of_every_file(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, _checkpoint(1))
    manifest = json.loads((path / "manifest.json").read_text())
    assert set(manifest) == {
        "model.safetensors",
        "ema.safetensors",
        "optimizer.safetensors",
        "rng.safetensors",
        "state.json",
    }
    assert all(len(entry["sha256"]) == 64 for entry in manifest.values())
