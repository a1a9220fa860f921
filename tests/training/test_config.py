from __future__ import annotations

from pathlib import Path

import pytest

from diffsight.errors import DiffsightError
from diffsight.training.config import TrainConfig, config_from_dict, load_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["digits", "shapes"])
def test_shipped_configs_load(name: str) -> None:
    cfg = load_config(ROOT / "configs" / f"{name}.toml")
    assert cfg.name == name and cfg.data.name == name and cfg.model.kind == "edm"


def test_defaults_and_round_trip() -> None:
    cfg = TrainConfig()
    assert config_from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"train": {"stepz": 3}}, "unknown key\\(s\\) \\['stepz'\\] in \\[train\\]"),
        ({"trian": {}}, "unknown top-level"),
        ({"train": {"lr": -1}}, "train.lr must be > 0"),
        ({"train": {"ema_decay": 1.0}}, "ema_decay"),
        ({"model": {"kind": "ve"}}, "model.kind"),
        ({"model": {"sigma_min": 0}}, "sigma_min"),
        ({"train": {"batch_size": 10, "grad_accum": 3}}, "divisible"),
        ({"data": []}, "must be a table"),
        ({"train": {"lr_schedule": "linear"}}, "lr_schedule must be 'constant' or 'cosine'"),
    ],
)
def test_invalid_configs_say_what_to_fix(raw: dict, message: str) -> None:
    with pytest.raises(DiffsightError, match=message):
        config_from_dict(raw)


def test_cli_overrides() -> None:
    cfg = TrainConfig().with_overrides(data="shapes", steps=7, batch_size=8, seed=3, resolution=32, channels=1)
    assert (cfg.data.name, cfg.data.resolution, cfg.data.channels) == ("shapes", 32, 1)
    assert (cfg.train.steps, cfg.train.batch_size, cfg.train.seed) == (7, 8, 3)
    assert TrainConfig().with_overrides(steps=None) == TrainConfig()
    with pytest.raises(DiffsightError, match="channels must be 1 or 3"):
        TrainConfig().with_overrides(channels=2)


def test_toml_errors(tmp_path: Path) -> None:
    with pytest.raises(DiffsightError, match="not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nsteps = 3")
    with pytest.raises(DiffsightError, match="not valid TOML"):
        load_config(bad)
    named = tmp_path / "mine.toml"
    named.write_text("[train]\nsteps = 3\n")
    assert load_config(named).name == "mine"
