"""Adapters for eps-, v- and x0-predicting VP networks: an ideal network gives back the exact denoiser."""

from __future__ import annotations

import pytest
import torch

from diffsight.errors import DiffsightError
from diffsight.models import DiscreteVPDenoiser, DiscreteVPSchedule
from diffsight.oracles import GaussianOracle

SCHED = DiscreteVPSchedule.from_name("linear", 1000)
ORACLE = GaussianOracle(torch.tensor([0.3, -0.2, 0.1, 0.0]), torch.diag(torch.tensor([0.3, 0.2, 0.5, 0.1])))


def ideal_vp_network(prediction: str):  # noqa: ANN201
    """A VP network that predicts exactly what the Gaussian oracle implies at (x_t, t)."""

    def net(x_t: torch.Tensor, t: torch.Tensor, cond: object) -> torch.Tensor:
        sigma = SCHED.t_to_sigma(t.double()).to(x_t.dtype)[:, None]  # (B, 1)
        alpha = (1 + sigma**2).rsqrt()
        sigma_vp = sigma * alpha
        x0 = ORACLE(x_t / alpha, sigma.flatten())
        eps = (x_t - alpha * x0) / sigma_vp
        return {"eps": eps, "v": alpha * eps - sigma_vp * x0, "x0": x0}[prediction]

    return net


@pytest.mark.parametrize("prediction", ["eps", "v", "x0", "epsilon", "v_prediction", "sample"])
def test_ideal_network_gives_the_exact_denoiser(prediction: str) -> None:
    key = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}.get(prediction, prediction)
    den = DiscreteVPDenoiser(ideal_vp_network(key), SCHED, prediction)
    x = torch.randn(5, 4, dtype=torch.float64)
    on_grid = SCHED.train_sigmas[torch.tensor([0, 10, 250, 600, 999])]
    off_grid = SCHED.t_to_sigma(torch.tensor([0.3, 10.5, 250.25, 600.9, 998.5], dtype=torch.float64))
    for sigma in (on_grid, off_grid):
        torch.testing.assert_close(
            den(x * (1 + sigma[:, None] ** 2).sqrt(), sigma), ORACLE(x * (1 + sigma[:, None] ** 2).sqrt(), sigma)
        )


def test_network_sees_vp_input_and_integer_timesteps_on_the_grid() -> None:
    seen = {}

    def net(x_t: torch.Tensor, t: torch.Tensor, cond: object) -> torch.Tensor:
        seen.update(x_t=x_t, t=t)
        return torch.zeros_like(x_t)

    den = DiscreteVPDenoiser(net, SCHED, "eps")
    sigma = SCHED.train_sigmas[torch.tensor([999, 500, 0])].float()  # float32 round-off must still snap
    x = torch.randn(3, 2)
    den(x, sigma)
    assert seen["t"].tolist() == [999.0, 500.0, 0.0]
    torch.testing.assert_close(seen["x_t"], x * (1 + sigma[:, None].double() ** 2).rsqrt().float())


def test_clip_and_attributes() -> None:
    den = DiscreteVPDenoiser(lambda x, t, c: torch.full_like(x, 5.0), SCHED, "x0", clip_x0=1.0)
    assert den(torch.zeros(2, 3), torch.ones(2)).max().item() == 1.0
    assert den.sigma_min == SCHED.sigma_min and den.sigma_max == SCHED.sigma_max
    with pytest.raises(DiffsightError, match="clip_x0"):
        DiscreteVPDenoiser(lambda x, t, c: x, SCHED, "eps", clip_x0=0.0)
    with pytest.raises(DiffsightError, match="eps, v or x0"):
        DiscreteVPDenoiser(lambda x, t, c: x, SCHED, "score")


def test_from_diffusers_clip_override() -> None:
    from diffsight.models import from_diffusers

    net = torch.nn.Identity()
    assert from_diffusers(net, {"clip_sample": True}).clip_x0 == 1.0
    assert from_diffusers(net, {"clip_sample": True}, clip_x0=None).clip_x0 is None
    assert from_diffusers(net, {}, clip_x0=2.0).clip_x0 == 2.0


def test_schedule_tables_are_computed_once() -> None:
    sched = DiscreteVPSchedule.from_name("linear", 100)
    assert sched.train_sigmas is sched.train_sigmas and sched.log_sigmas is sched.log_sigmas
