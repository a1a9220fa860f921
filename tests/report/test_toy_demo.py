"""run_toy_demo: the measured numbers are sensible, runs are reproducible, bad configs fail clearly."""

from __future__ import annotations

import math
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from diffsight.data import EIGHT_GAUSSIANS_STD
from diffsight.errors import DiffsightError, UnknownNameError
from diffsight.report import ToyDemoConfig, ToyDemoResult, run_toy_demo
from diffsight.sampling import SAMPLERS, karras_sigmas

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_heun_samples_land_on_the_modes(tmp_path: Path) -> None:
    config = ToyDemoConfig(out=tmp_path / "a" / "demo.png", n=400, steps=10, sampler="heun")
    result = run_toy_demo(config)
    assert isinstance(result, ToyDemoResult)
    assert result.path == config.out and result.path.read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in result.path.parent.iterdir()) == ["demo.png"]
    assert result.nfe == 2 * 10 - 1  # Heun: two evaluations per step, one on the last
    assert "\n" not in result.summary and "heun" in result.summary
    # most samples end near a mode: exact draws are Rayleigh(std) away, mean std * sqrt(pi / 2)
    assert result.mode_distance is not None and result.mode_distance_exact is not None
    assert result.mode_distance < 3 * EIGHT_GAUSSIANS_STD
    assert math.isclose(result.mode_distance_exact, EIGHT_GAUSSIANS_STD * math.sqrt(math.pi / 2))
    assert abs(result.mode_distance - result.mode_distance_exact) < 0.25 * result.mode_distance_exact
    # an ODE sampler maps the starting noise to a mode almost deterministically by angle
    assert result.start_agreement is not None and result.start_agreement > 0.9
    assert result.commit_sigma in karras_sigmas(10, 0.002, 40.0).tolist()


def test_ddpm_is_reproducible_and_forgets_its_start(tmp_path: Path) -> None:
    a = run_toy_demo(ToyDemoConfig(out=tmp_path / "a.png", n=400, steps=12, sampler="ddpm", seed=3))
    b = run_toy_demo(ToyDemoConfig(out=tmp_path / "b.png", n=400, steps=12, sampler="ddpm", seed=3))
    c = run_toy_demo(ToyDemoConfig(out=tmp_path / "c.png", n=400, steps=12, sampler="ddpm", seed=4))
    assert (a.mode_distance, a.start_agreement, a.commit_sigma) == (b.mode_distance, b.start_agreement, b.commit_sigma)
    assert a.mode_distance != c.mode_distance
    assert a.nfe == 12
    assert a.mode_distance is not None and a.mode_distance < 3 * EIGHT_GAUSSIANS_STD
    # fresh noise at every step: the end is far less predictable from the start than with an ODE sampler
    assert a.start_agreement is not None and a.start_agreement < 0.6


def test_other_datasets_use_the_empirical_denoiser_which_memorizes(tmp_path: Path) -> None:
    result = run_toy_demo(ToyDemoConfig(out=tmp_path / "moons.png", n=200, steps=8, dataset="moons"))
    assert result.mode_distance is None and result.start_agreement is None and result.commit_sigma is None
    assert result.nearest_train_distance < 0.02
    assert "moons" in result.summary


@pytest.mark.parametrize("steps", [1, 2])
def test_very_short_schedules_still_draw(tmp_path: Path, steps: int) -> None:
    result = run_toy_demo(ToyDemoConfig(out=tmp_path / "short.png", n=5, steps=steps, sampler="pc"))
    assert result.path.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"n": 0}, DiffsightError, "n (the number of points)"),
        ({"n": 20_001}, DiffsightError, "20000"),
        ({"steps": 0}, DiffsightError, "steps"),
        ({"seed": -1}, DiffsightError, "seed"),
        ({"sampler": "nope"}, UnknownNameError, "heun"),
        ({"dataset": "spiral"}, UnknownNameError, "swiss_roll"),
        ({"sigma_max": 0.001}, DiffsightError, "sigma_max"),
        ({"sigma_min": 0.0}, DiffsightError, "sigma_min"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, kwargs: dict, error: type, needle: str) -> None:
    with pytest.raises(error) as info:
        ToyDemoConfig(out=tmp_path / "x.png", **kwargs)
    assert needle in str(info.value)


def test_out_must_be_a_png_file(tmp_path: Path) -> None:
    with pytest.raises(DiffsightError, match=r"\.png"):
        ToyDemoConfig(out=tmp_path / "x.pdf")
    folder = tmp_path / "looks.png"
    folder.mkdir()
    with pytest.raises(DiffsightError, match="folder"):
        ToyDemoConfig(out=folder)


def test_config_is_frozen_and_every_sampler_name_is_accepted(tmp_path: Path) -> None:
    config = ToyDemoConfig(out=str(tmp_path / "x.png"))  # type: ignore[arg-type]
    assert isinstance(config.out, Path)
    with pytest.raises(FrozenInstanceError):
        config.n = 3  # type: ignore[misc]
    for name in SAMPLERS:
        ToyDemoConfig(out=tmp_path / "x.png", sampler=name)
