"""The training loop in-process: it learns, resumes exactly, refuses what it must, and writes a model folder."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffsight.errors import DiffsightError
from diffsight.models import load_model
from diffsight.training import CheckpointError, TrainConfig, Trainer, train
from diffsight.training.config import config_from_dict


def tiny(steps: int = 12, **train_overrides: object) -> TrainConfig:
    raw = {
        "name": "tiny",
        "data": {"name": "digits"},
        "model": {"preset": "tiny"},
        "train": {
            "steps": steps,
            "batch_size": 16,
            "lr": 1e-3,
            "warmup_steps": 5,
            "log_every": 4,
            "checkpoint_every": 4,
            "sample_every": 0,
            **train_overrides,
        },
    }
    return config_from_dict(raw)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def test_loss_goes_down_and_the_model_folder_loads(tmp_path: Path) -> None:
    result = train(tiny(steps=120, log_every=20, lr=2e-3), tmp_path / "run", progress=False)
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [20, 40, 60, 80, 100, 120]
    assert lines[-1]["loss"] < 0.7 * lines[0]["loss"], lines
    model = load_model(result.model_dir)
    assert model.kind == "edm" and model.num_classes == 10 and model.null_class == 10
    info = json.loads((result.model_dir / "diffsight.json").read_text())
    assert len(info["data"]["fingerprint"]) == 64
    assert info["training"]["steps"] == 120 and info["training"]["images_seen"] == 120 * 16


def test_resume_reproduces_the_uninterrupted_run_bit_for_bit(tmp_path: Path) -> None:
    cfg = tiny(steps=12)
    train(cfg, tmp_path / "straight", progress=False)
    train(replace(cfg, train=replace(cfg.train, steps=8)), tmp_path / "split", progress=False)
    train(cfg, tmp_path / "split", resume=True, progress=False)
    for name in ("model.safetensors", "ema.safetensors", "optimizer.safetensors", "rng.safetensors"):
        a = weights(tmp_path / "straight" / "checkpoints" / "step-00000012" / name)
        b = weights(tmp_path / "split" / "checkpoints" / "step-00000012" / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    metrics = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in metrics] == [4, 8, 12]


def test_grad_accumulation_matches_one_big_batch(tmp_path: Path) -> None:
    one = Trainer(tiny(steps=3), tmp_path / "a", progress=False)
    two = Trainer(tiny(steps=3, grad_accum=2), tmp_path / "b", progress=False)
    for step in range(3):
        one.train_step(step)
        two.train_step(step)
    for (name, p), q in zip(one.network.named_parameters(), two.network.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=name)


def test_an_existing_run_needs_resume_and_a_changed_config_is_refused(tmp_path: Path) -> None:
    cfg = tiny(steps=4)
    train(cfg, tmp_path / "run", progress=False)
    with pytest.raises(DiffsightError, match="--resume"):
        train(replace(cfg, train=replace(cfg.train, steps=8)), tmp_path / "run", progress=False)
    changed = replace(cfg, train=replace(cfg.train, steps=8, lr=5e-3))
    with pytest.raises(CheckpointError, match="train.lr"):
        train(changed, tmp_path / "run", resume=True, progress=False)
    with pytest.raises(DiffsightError, match="already at step 4"):
        train(cfg, tmp_path / "run", resume=True, progress=False)


def test_a_corrupted_latest_checkpoint_is_refused(tmp_path: Path) -> None:
    cfg = tiny(steps=4)
    train(cfg, tmp_path / "run", progress=False)
    target = tmp_path / "run" / "checkpoints" / "step-00000004" / "model.safetensors"
    target.write_bytes(target.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="model.safetensors is truncated"):
        train(replace(cfg, train=replace(cfg.train, steps=8)), tmp_path / "run", resume=True, progress=False)


def test_vp_model_is_a_diffusers_pipeline_folder(tmp_path: Path) -> None:
    from diffusers import DDPMPipeline

    raw = tiny(steps=3).to_dict()
    raw["model"].update(kind="vp", prediction_type="v_prediction", conditional=False)
    result = train(config_from_dict(raw), tmp_path / "run", progress=False)
    pipe = DDPMPipeline.from_pretrained(str(result.model_dir), use_safetensors=True)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    model = load_model(result.model_dir)
    assert model.kind == "vp" and model.num_classes == 0


def test_mlp_learns_toy_data(tmp_path: Path) -> None:
    raw = {
        "name": "moons",
        "data": {"name": "toy2d:moons", "n": 2000},
        "model": {"mlp": {"hidden": 64, "depth": 2}},
        "train": {
            "steps": 150,
            "batch_size": 128,
            "lr": 2e-3,
            "warmup_steps": 10,
            "log_every": 50,
            "checkpoint_every": 150,
            "sample_every": 0,
        },
    }
    result = train(config_from_dict(raw), tmp_path / "run", progress=False)
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["loss"] < lines[0]["loss"]
    model = load_model(result.model_dir)
    assert model.info["network"] == "mlp" and model.event_shape == (2,)


def test_sample_grids_are_written(tmp_path: Path) -> None:
    train(tiny(steps=4, sample_every=2, sample_n=10, sample_steps=3), tmp_path / "run", progress=False)
    grids = sorted(p.name for p in (tmp_path / "run" / "samples").iterdir())
    assert grids == ["step-00000002.png", "step-00000004.png"]


def test_batch_size_must_split_over_grad_accum() -> None:
    with pytest.raises(DiffsightError, match="divisible"):
        tiny(grad_accum=3)


def test_cosine_schedule_warms_up_then_decays_to_zero(tmp_path: Path) -> None:
    trainer = Trainer(tiny(steps=105, lr_schedule="cosine"), tmp_path / "run", progress=False)
    lrs = [trainer._set_lr(step) for step in range(105)]
    assert lrs[0] == pytest.approx(1e-3 / 5) and lrs[4] == pytest.approx(1e-3)
    assert lrs[5] == pytest.approx(1e-3)  # the decay starts where the warm-up ends
    assert lrs[55] == pytest.approx(0.5e-3)  # half way through the decay
    assert all(a >= b for a, b in zip(lrs[5:], lrs[6:], strict=False)) and lrs[-1] < 1e-6
    constant = Trainer(tiny(steps=105), tmp_path / "run2", progress=False)
    assert constant._set_lr(104) == pytest.approx(1e-3)
