"""Contract tests generated from the sampler registry (STYLE.md, principle 14).

For every sampler: batched equals unbatched; the same generator gives the same samples; gradients flow from
the final sample to the initial noise; restarting from step k with the recorded state reproduces the run;
the callback sees every step; dtype is preserved; nothing bakes in no_grad.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from diffsight.models import EDMPrecond
from diffsight.oracles import GaussianMixtureOracle, GaussianOracle
from diffsight.sampling import DETERMINISTIC_SAMPLERS, SAMPLERS, StepRecord, karras_sigmas, replay_noise, sample

NAMES = sorted(SAMPLERS)
STOCHASTIC = sorted(set(SAMPLERS) - set(DETERMINISTIC_SAMPLERS))


def _mixture() -> GaussianMixtureOracle:
    means = torch.tensor([[2.0, 0.0, 1.0], [-2.0, 1.0, 0.0], [0.0, -2.0, -1.0]], dtype=torch.float64)
    return GaussianMixtureOracle(torch.tensor([0.5, 0.3, 0.2]), means, torch.tensor([0.3, 0.5, 0.2]))


def _rand(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _kwargs(name: str, seed: int = 1, batch: int | None = None) -> dict[str, Any]:
    if name in DETERMINISTIC_SAMPLERS:
        return {}
    if batch is None:
        return {"generator": torch.Generator().manual_seed(seed)}
    return {"generator": [torch.Generator().manual_seed(seed + b) for b in range(batch)]}


@pytest.mark.parametrize("name", NAMES)
def test_batched_equals_unbatched(name: str) -> None:
    oracle, sigmas = _mixture(), karras_sigmas(12, sigma_max=20.0)
    x = 20.0 * _rand(4, 3)
    batched = sample(name, oracle, x, sigmas, **_kwargs(name, batch=4))
    singles = [sample(name, oracle, x[b : b + 1], sigmas, **_kwargs(name, seed=1 + b, batch=1)) for b in range(4)]
    torch.testing.assert_close(batched, torch.cat(singles), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_same_generator_same_samples(name: str) -> None:
    oracle, sigmas = _mixture(), karras_sigmas(10, sigma_max=20.0)
    x = 20.0 * _rand(6, 3)
    a = sample(name, oracle, x, sigmas, generator=torch.Generator().manual_seed(5))
    b = sample(name, oracle, x, sigmas, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    c = sample(name, oracle, x, sigmas, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, c) == (name in DETERMINISTIC_SAMPLERS)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_flow_to_the_initial_noise(name: str) -> None:
    """Through a real network with EDM preconditioning, not only through a closed form."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.SiLU(), torch.nn.Linear(32, 3))

    def backbone(x: torch.Tensor, c_noise: torch.Tensor, cond: object) -> torch.Tensor:
        return net(torch.cat([x, c_noise[:, None]], 1))  # (B, 3 + 1) -> (B, 3)

    denoiser = EDMPrecond(backbone, sigma_data=1.0)
    x = (10.0 * _rand(5, 3, dtype=torch.float32)).requires_grad_(True)
    out = sample(name, denoiser, x, karras_sigmas(6, sigma_max=10.0), **_kwargs(name))
    grad_x, grad_w = torch.autograd.grad(out.square().sum(), [x, net[0].weight])
    assert torch.isfinite(grad_x).all() and grad_x.abs().sum() > 0
    assert grad_w.abs().sum() > 0


def test_gradient_matches_the_closed_form_jacobian(gauss2d: GaussianOracle) -> None:
    """Euler with the Gaussian oracle is linear in x: its Jacobian is prod_i (I + (sn - s) A_i)."""
    sigmas = karras_sigmas(5, sigma_max=10.0)
    x = _rand(1, 2).requires_grad_(True)
    jac = torch.autograd.functional.jacobian(lambda v: sample("euler", gauss2d, v, sigmas), x).reshape(2, 2)
    expected = torch.eye(2, dtype=torch.float64)
    for s, sn in zip(sigmas[:-1].tolist(), sigmas[1:].tolist(), strict=True):
        a = torch.eye(2, dtype=torch.float64) - gauss2d.cov @ torch.linalg.inv(gauss2d.cov + s**2 * torch.eye(2))
        expected = (torch.eye(2, dtype=torch.float64) + (sn - s) / s * a) @ expected
    torch.testing.assert_close(jac, expected)


def _record(name: str, x: torch.Tensor, sigmas: torch.Tensor, **kw: Any) -> tuple[torch.Tensor, list[StepRecord]]:
    records: list[StepRecord] = []
    out = sample(name, _mixture(), x, sigmas, callback=records.append, **kw)
    return out, records


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("k", [1, 4, 7])
def test_restart_from_step_k_reproduces_the_run(name: str, k: int) -> None:
    sigmas = karras_sigmas(9, sigma_max=20.0)
    x = 20.0 * _rand(3, 3)
    full, records = _record(name, x, sigmas, **_kwargs(name))
    kw: dict[str, Any] = {}
    if name in STOCHASTIC:
        kw["noise"] = replay_noise({r.index: r.noise for r in records})
    if name.startswith("dpmpp"):
        kw["x0_history"] = [r.x0_hat for r in records[max(0, k - 2) : k]]
    resumed = sample(name, _mixture(), records[k].x, sigmas, start=k, **kw)
    torch.testing.assert_close(resumed, full, rtol=0, atol=0)


@pytest.mark.parametrize("name", STOCHASTIC)
def test_restart_with_the_generator_state(name: str) -> None:
    sigmas, k = karras_sigmas(9, sigma_max=20.0), 5
    gen = torch.Generator().manual_seed(3)
    states: dict[int, torch.Tensor] = {}

    def keep_state(r: StepRecord) -> None:
        states[r.index + 1] = gen.get_state()  # the state entering step r.index + 1

    records: list[StepRecord] = []
    full = sample(
        name,
        _mixture(),
        20.0 * _rand(3, 3),
        sigmas,
        generator=gen,
        callback=lambda r: (records.append(r), keep_state(r)),
    )
    gen2 = torch.Generator()
    gen2.set_state(states[k])
    resumed = sample(name, _mixture(), records[k].x, sigmas, start=k, generator=gen2)
    assert torch.equal(resumed, full)


@pytest.mark.parametrize("name", NAMES)
def test_callback_sees_every_step(name: str) -> None:
    sigmas = karras_sigmas(7, sigma_max=20.0)
    out, records = _record(name, 20.0 * _rand(2, 3), sigmas, **_kwargs(name))
    assert [r.index for r in records] == list(range(7))
    assert [r.sigma for r in records] == sigmas[:-1].tolist()
    assert [r.sigma_next for r in records] == sigmas[1:].tolist()
    for a, b in zip(records, records[1:], strict=False):
        assert a.x_next is b.x
    assert records[-1].x_next is out
    assert all(r.sampler == name for r in records)
    drew = any(r.noise for r in records)
    assert drew == (name not in DETERMINISTIC_SAMPLERS)
    with pytest.raises(AttributeError):
        records[0].sigma = 1.0  # type: ignore[misc]  # frozen


def test_heun_spends_2n_minus_1_evaluations() -> None:
    calls = []
    oracle = _mixture()

    def counting(x: torch.Tensor, sigma: torch.Tensor, cond: object = None) -> torch.Tensor:
        calls.append(1)
        return oracle(x, sigma)

    _, records = _record("heun", 20.0 * _rand(2, 3), karras_sigmas(8, sigma_max=20.0))
    sample("heun", counting, 20.0 * _rand(2, 3), karras_sigmas(8, sigma_max=20.0))
    assert len(calls) == 15 == sum(r.nfe for r in records)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_the_callers(name: str, dtype: torch.dtype) -> None:
    oracle = GaussianOracle(torch.zeros(3), torch.eye(3)).to(dtype)
    out = sample(name, oracle, 5.0 * _rand(2, 3, dtype=dtype), karras_sigmas(4, sigma_max=5.0), **_kwargs(name))
    assert out.dtype == dtype


@pytest.mark.parametrize("name", NAMES)
def test_runs_under_no_grad_and_inference_mode(name: str) -> None:
    x, sigmas = 20.0 * _rand(2, 3), karras_sigmas(4, sigma_max=20.0)
    with torch.no_grad():
        a = sample(name, _mixture(), x, sigmas, **_kwargs(name))
    with torch.inference_mode():
        b = sample(name, _mixture(), x, sigmas, **_kwargs(name))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_image_shaped_batches(name: str) -> None:
    """Samplers are shape-agnostic: (B, C, H, W) works as well as (B, d)."""
    oracle = GaussianOracle(torch.zeros(1, 4, 4), None)
    out = sample(name, oracle, 5.0 * _rand(3, 1, 4, 4), karras_sigmas(5, sigma_max=5.0), **_kwargs(name))
    assert out.shape == (3, 1, 4, 4) and torch.isfinite(out).all()
