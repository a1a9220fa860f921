"""The two likelihood estimators agree with each other and with the closed form (issue 5, known answers)."""

from __future__ import annotations

import pytest
import torch

from diffsight.oracles import GaussianOracle
from diffsight.sampling import info_nll, ode_log_likelihood

pytestmark = pytest.mark.usefixtures("one_thread")


def test_ode_and_information_estimators_agree_on_a_gaussian() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 4, generator=g, dtype=torch.float64)
    cov = a @ a.T / 4 + 0.2 * torch.eye(4, dtype=torch.float64)
    mean = torch.tensor([0.5, -1.0, 0.0, 2.0], dtype=torch.float64)
    oracle = GaussianOracle(mean, cov)
    x = mean + torch.randn(5, 4, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    exact = -oracle.log_prob(x)
    ode = ode_log_likelihood(oracle, x, divergence="exact", sigma_max=1000.0, rtol=1e-6, atol=1e-6, prior_mean=mean)
    info = info_nll(oracle, x, points=4000, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(ode.nll, exact, atol=2e-3), (ode.nll, exact)
    z = (info.nll - ode.nll) / info.stderr
    assert z.abs().max() < 4.0, (info.nll, ode.nll, info.stderr)
    assert info.stderr.max() < 0.2  # the comparison is tight enough to catch a real disagreement
    worse = info_nll(
        lambda x, s, c=None: oracle(x, s) * 0.8, x, points=4000, generator=torch.Generator().manual_seed(1)
    )
    # negative control: a scaled denoiser is caught (higher NLL at every point, far beyond the pooled SE)
    assert (worse.nll > ode.nll + 1.0).all()
    assert (worse.nll - ode.nll).sum() / worse.stderr.pow(2).sum().sqrt() > 3.0
