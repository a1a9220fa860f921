"""Schedules: closed-form values, the timestep <-> sigma map, and agreement with diffusers' tables."""

from __future__ import annotations

import math

import pytest
import torch

from diffsight.errors import ScheduleError, UnknownNameError
from diffsight.sampling import (
    DiscreteVPSchedule,
    betas_cosine,
    betas_linear,
    betas_scaled_linear,
    check_sigmas,
    karras_sigmas,
    loglinear_snr_sigmas,
    make_betas,
    ve_geometric_sigmas,
)


def test_karras_endpoints_and_formula() -> None:
    s = karras_sigmas(18, sigma_min=0.002, sigma_max=80.0, rho=7.0)
    assert s.shape == (19,) and s[-1] == 0
    assert s[0].item() == pytest.approx(80.0) and s[-2].item() == pytest.approx(0.002)
    i = 5  # EDM eq. 5 at one index
    expected = (80 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert s[i].item() == pytest.approx(expected, rel=1e-12)
    check_sigmas(s)
    assert karras_sigmas(1).tolist() == [80.0, 0.0]


def test_ve_geometric_is_uniform_in_log_sigma() -> None:
    s = ve_geometric_sigmas(10, 0.01, 50.0)
    ratios = s[1:-1] / s[:-2]
    torch.testing.assert_close(ratios, torch.full_like(ratios, ratios[0].item()))
    assert s[0].item() == pytest.approx(50.0) and s[-2].item() == pytest.approx(0.01)
    lam = -loglinear_snr_sigmas(10, 0.01, 50.0)[:-1].log()  # log-SNR
    torch.testing.assert_close(lam.diff(), torch.full((9,), lam.diff()[0].item(), dtype=torch.float64))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_steps": 0}, "positive integer"),
        ({"sigma_min": 0.0}, "0 < sigma_min"),
        ({"sigma_max": 0.001}, "sigma_max"),
    ],
)
def test_schedule_parameters_are_validated(kwargs: dict[str, float], message: str) -> None:
    args = {"num_steps": 10, "sigma_min": 0.002, "sigma_max": 80.0} | kwargs
    with pytest.raises(ScheduleError, match=message):
        karras_sigmas(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "ours", "theirs"),
    [
        ("linear", lambda: betas_linear(1000), {"beta_schedule": "linear"}),
        (
            "scaled_linear",
            lambda: betas_scaled_linear(1000, 0.00085, 0.012),
            {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012},
        ),
        ("cosine", lambda: betas_cosine(1000), {"beta_schedule": "squaredcos_cap_v2"}),
    ],
)
def test_betas_match_diffusers(name: str, ours: object, theirs: dict[str, object]) -> None:
    from diffusers import DDPMScheduler

    reference = DDPMScheduler(**theirs).betas.double()  # type: ignore[arg-type]
    torch.testing.assert_close(ours(), reference, rtol=1e-5, atol=1e-7)  # type: ignore[operator]


def test_make_betas_by_name() -> None:
    torch.testing.assert_close(make_betas("cosine", 100), make_betas("squaredcos_cap_v2", 100))
    with pytest.raises(UnknownNameError, match="unknown beta schedule 'quadratic'"):
        make_betas("quadratic")


def test_vp_sigmas_closed_form() -> None:
    sched = DiscreteVPSchedule.from_name("linear", 1000)
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    torch.testing.assert_close(sched.train_sigmas, ((1 - abar) / abar).sqrt())
    assert sched.sigma_min == pytest.approx(math.sqrt(1e-4 / (1 - 1e-4)))
    assert 150 < sched.sigma_max < 160  # the well-known ~157 of the linear DDPM schedule


def test_timestep_sigma_map_round_trips() -> None:
    sched = DiscreteVPSchedule.from_name("linear", 1000)
    t = torch.tensor([0.0, 0.5, 10.0, 499.25, 998.9, 999.0], dtype=torch.float64)
    torch.testing.assert_close(sched.sigma_to_t(sched.t_to_sigma(t)), t)
    integers = torch.arange(1000, dtype=torch.float64)
    torch.testing.assert_close(sched.t_to_sigma(integers), sched.train_sigmas)
    assert sched.sigma_to_t(torch.tensor(1e-9)).item() == 0.0  # clamped below the grid
    assert sched.sigma_to_t(torch.tensor(1e9)).item() == 999.0  # and above
    with pytest.raises(ScheduleError, match=r"\[0, 999\]"):
        sched.t_to_sigma(1000.0)


@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing"])
@pytest.mark.parametrize("steps", [10, 25, 50, 1000])
def test_timesteps_match_diffusers_ddim(spacing: str, steps: int) -> None:
    from diffusers import DDIMScheduler

    ref = DDIMScheduler(timestep_spacing=spacing, steps_offset=0)
    ref.set_timesteps(steps)
    sched = DiscreteVPSchedule.from_name("linear", 1000)
    assert sched.timesteps(steps, spacing).tolist() == ref.timesteps.tolist()  # type: ignore[arg-type]
    sigmas = sched.sigmas(steps, spacing)  # type: ignore[arg-type]
    assert sigmas[-1] == 0 and sigmas.numel() == steps + 1
    check_sigmas(sigmas)


def test_timesteps_validated() -> None:
    sched = DiscreteVPSchedule.from_name("linear", 100)
    with pytest.raises(ScheduleError, match=r"\[1, 100\]"):
        sched.timesteps(101)
    with pytest.raises(UnknownNameError, match="spacing"):
        sched.timesteps(10, "uniform")  # type: ignore[arg-type]
    with pytest.raises(ScheduleError, match="betas"):
        DiscreteVPSchedule(torch.tensor([0.5, 1.5]))
