"""Bad input gets a clear DiffsightError that names the problem, never a stack trace from inside torch."""

from __future__ import annotations

import pytest
import torch

from diffsight.errors import DiffsightError, ScheduleError, ShapeError, UnknownNameError
from diffsight.oracles import GaussianOracle
from diffsight.sampling import ClassifierFreeGuidance, get_sampler, karras_sigmas, sample

ORACLE = GaussianOracle(torch.zeros(2), torch.eye(2))
X = torch.randn(4, 2)
SIGMAS = karras_sigmas(5)


@pytest.mark.parametrize(
    ("sigmas", "message"),
    [
        (torch.tensor([0.0, 1.0, 2.0]), "strictly descending"),
        (torch.tensor([2.0, 2.0, 0.0]), "strictly descending"),
        (torch.tensor([[2.0, 1.0, 0.0]]), "1-D"),
        (torch.tensor([1.0]), "at least 2"),
        (torch.tensor([2.0, float("nan"), 0.0]), "finite"),
        (torch.tensor([2.0, 1.0, -1.0]), "non-negative"),
        ("fast", "1-D tensor"),
    ],
)
def test_bad_sigmas(sigmas: object, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        sample("euler", ORACLE, X, sigmas)  # type: ignore[arg-type]


def test_flipped_schedule_hint() -> None:
    with pytest.raises(ScheduleError, match="do not flip"):
        sample("heun", ORACLE, X, SIGMAS.flip(0))


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (torch.randn(2), "batch dimension"),
        (torch.ones(4, 2, dtype=torch.long), "floating-point"),
        ([[0.0, 1.0]], "torch.Tensor"),
    ],
)
def test_bad_state(x: object, message: str) -> None:
    with pytest.raises(ShapeError, match=message):
        sample("euler", ORACLE, x, SIGMAS)  # type: ignore[arg-type]


def test_denoiser_of_the_wrong_shape() -> None:
    with pytest.raises(ShapeError, match="must match x"):
        sample("euler", lambda x, s, c=None: x[:, :1], X, SIGMAS)


def test_oracle_of_the_wrong_dimension() -> None:
    with pytest.raises(ShapeError, match="2 values per sample"):
        sample("euler", ORACLE, torch.randn(4, 3), SIGMAS)


def test_unknown_sampler_lists_the_names() -> None:
    with pytest.raises(UnknownNameError, match="unknown sampler 'dpm_fast'; choose one of: ddim, ddpm"):
        get_sampler("dpm_fast")


@pytest.mark.parametrize("start", [-1, 5, 1.5])
def test_start_out_of_range(start: object) -> None:
    with pytest.raises(DiffsightError, match=r"start must be an integer step index in \[0, 4\]"):
        sample("ddpm", ORACLE, X, SIGMAS, start=start)


def test_generator_and_noise_together() -> None:
    with pytest.raises(DiffsightError, match="either generator= or noise="):
        sample("ddpm", ORACLE, X, SIGMAS, generator=torch.Generator(), noise=lambda i, k, x: torch.zeros_like(x))


def test_wrong_number_of_generators() -> None:
    with pytest.raises(ShapeError, match="one per sample"):
        sample("ddpm", ORACLE, X, SIGMAS, generator=[torch.Generator()] * 3)


@pytest.mark.parametrize(("kwargs", "message"), [({"eta": 1.5}, "eta"), ({"eta": -0.1}, "eta")])
def test_bad_ddim_options(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(DiffsightError, match=message):
        sample("ddim", ORACLE, X, SIGMAS, **kwargs)


def test_bad_pc_options() -> None:
    with pytest.raises(DiffsightError, match="snr > 0"):
        sample("pc", ORACLE, X, SIGMAS, snr=0.0)
    with pytest.raises(DiffsightError, match="step_rule"):
        sample("pc", ORACLE, X, SIGMAS, step_rule="adaptive")


def test_bad_churn() -> None:
    with pytest.raises(DiffsightError, match="s_churn"):
        sample("heun", ORACLE, X, SIGMAS, s_churn=-1.0)


def test_history_of_the_wrong_shape() -> None:
    with pytest.raises(ShapeError, match="x0_history"):
        sample("dpmpp_2m", ORACLE, X, SIGMAS, start=1, x0_history=[torch.zeros(3, 2)])


def test_more_history_than_steps() -> None:
    with pytest.raises(DiffsightError, match="only 1 steps precede"):
        sample("dpmpp_3m", ORACLE, X, SIGMAS, start=1, x0_history=[X, X])


def test_replayed_noise_missing() -> None:
    from diffsight.sampling import replay_noise

    with pytest.raises(ShapeError, match="no recorded noise for step 0"):
        sample("ddpm", ORACLE, X, SIGMAS, noise=replay_noise({}))


def test_guidance_needs_a_condition() -> None:
    cfg = ClassifierFreeGuidance(lambda x, s, c=None: x, scale=2.0, null_cond=10)
    with pytest.raises(DiffsightError, match="needs a condition"):
        sample("euler", cfg, X, SIGMAS)
    with pytest.raises(ShapeError, match="one condition per sample"):
        sample("euler", cfg, X, SIGMAS, cond=torch.tensor([1, 2]))


def test_errors_are_value_errors() -> None:
    """Callers who only know the standard library can still catch them."""
    assert issubclass(DiffsightError, ValueError) and issubclass(UnknownNameError, KeyError)
    assert str(UnknownNameError("plain message")) == "plain message"
