"""LinearDenoiser: exact closed-form retraining (ground truth for training-data attribution)."""

from __future__ import annotations

import pytest
import torch

from diffsight.errors import DiffsightError
from diffsight.oracles import GaussianOracle
from diffsight.oracles.linear import LinearDenoiser

pytestmark = pytest.mark.usefixtures("one_thread")


def _data(n: int = 120, d: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64) * 0.5 + torch.eye(d, dtype=torch.float64)
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ mix.T + 0.3


def _lstsq_fit(data: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor, ridge: float) -> torch.Tensor:
    """Independent reference: stack every (example, draw) row, append sqrt(ridge) I rows, and call lstsq."""
    d = data.shape[1]
    out = []
    for j, s in enumerate(sigmas):
        noisy = (data[:, None, :] + s * noise[:, j]).reshape(-1, d)
        z = torch.cat([noisy, torch.ones(noisy.shape[0], 1, dtype=noisy.dtype)], 1)
        y = data[:, None, :].expand(-1, noise.shape[2], -1).reshape(-1, d)
        z = torch.cat([z, ridge**0.5 * torch.eye(d + 1, dtype=z.dtype)])
        y = torch.cat([y, torch.zeros(d + 1, d, dtype=y.dtype)])
        out.append(torch.linalg.lstsq(z, y).solution)  # (d + 1, d)
    return torch.stack(out)


def test_retrain_without_matches_refit_from_scratch() -> None:
    data = _data()
    lin = LinearDenoiser(data, [0.05, 0.3, 1.0, 4.0], draws=5, ridge=1e-2, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(data.shape[0], dtype=torch.bool)
    mask[torch.randperm(data.shape[0], generator=torch.Generator().manual_seed(2))[:45]] = True
    fast = lin.retrain_without(mask)
    scratch = LinearDenoiser(data[~mask], lin.sigmas, ridge=1e-2, noise=lin.noise[~mask])
    ref = _lstsq_fit(data[~mask], lin.noise[~mask], lin.sigmas, 1e-2)
    torch.testing.assert_close(fast.weight, scratch.weight, atol=1e-10, rtol=0)
    torch.testing.assert_close(fast.bias, scratch.bias, atol=1e-10, rtol=0)
    torch.testing.assert_close(fast.weight, ref[:, :3, :].transpose(-1, -2), atol=1e-9, rtol=0)
    torch.testing.assert_close(fast.bias, ref[:, 3, :], atol=1e-9, rtol=0)
    # removing examples changes the fit (the check can fail), and the full model is untouched
    assert (fast.weight - lin.weight).abs().max() > 1e-3
    full = lin.retrain_without(torch.zeros_like(mask))
    torch.testing.assert_close(full.weight, lin.weight, atol=1e-12, rtol=0)


def test_batched_solve_matches_one_at_a_time() -> None:
    lin = LinearDenoiser(_data(60), [0.1, 1.0], draws=3, generator=torch.Generator().manual_seed(0))
    keep = torch.rand(4, 60, generator=torch.Generator().manual_seed(3)) < 0.5
    w, b = lin.solve(keep)
    for m in range(4):
        one = lin.retrain_without(~keep[m])
        torch.testing.assert_close(w[m], one.weight.detach(), atol=1e-12, rtol=0)
        torch.testing.assert_close(b[m], one.bias.detach(), atol=1e-12, rtol=0)


def test_denoiser_contract_and_gaussian_limit() -> None:
    mean = torch.tensor([0.5, -1.0], dtype=torch.float64)
    cov = torch.tensor([[1.0, 0.6], [0.6, 0.8]], dtype=torch.float64)
    oracle = GaussianOracle(mean, cov)
    data = oracle.sample(4000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    lin = LinearDenoiser(data, [0.2, 0.5, 1.0, 2.0], draws=4, generator=torch.Generator().manual_seed(1))
    x = oracle.sample(64, sigma=0.5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    err = (lin(x, 0.5) - oracle(x, 0.5)).abs().max().item()
    assert err < 0.05, err  # the least-squares fit approaches the Wiener denoiser
    # per-sample sigmas, between-grid interpolation in log sigma, and the range guard
    s = torch.tensor([0.2, 0.7, 2.0, 1.0], dtype=torch.float64)
    out = lin(x[:4], s)
    torch.testing.assert_close(out[2:3], lin(x[2:3], 2.0))
    t = (torch.log(torch.tensor(0.7)) - torch.log(torch.tensor(0.5))) / (
        torch.log(torch.tensor(1.0)) - torch.log(torch.tensor(0.5))
    )
    a = (1 - t.item()) * lin.weight[1] + t.item() * lin.weight[2]
    bb = (1 - t.item()) * lin.bias[1] + t.item() * lin.bias[2]
    torch.testing.assert_close(out[1], a @ x[1] + bb)
    assert lin.sigma_min == pytest.approx(0.2) and lin.sigma_max == pytest.approx(2.0)
    with pytest.raises(DiffsightError, match="grid"):
        lin(x[:2], 5.0)
    loss = lin.loss_per_example()
    assert loss.shape == (4000,) and torch.all(loss >= 0)
