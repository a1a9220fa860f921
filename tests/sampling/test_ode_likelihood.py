"""Known answers for the probability-flow ODE log-likelihood: Gaussian and Gaussian-mixture oracles, whose
noised densities are closed-form, with negative controls (a scaled denoiser, the divergence term's sign),
and a smoke test on the shipped digits model."""

from __future__ import annotations

import math

import pytest
import torch

from diffsight.errors import DiffsightError, UnknownNameError
from diffsight.oracles import GaussianMixtureOracle, GaussianOracle
from diffsight.sampling.dequantize import bits_per_dim, uniform_dequantize
from diffsight.sampling.ode_likelihood import LikelihoodResult, ode_log_likelihood

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64


@pytest.fixture(scope="module")
def gauss4() -> tuple[GaussianOracle, torch.Tensor]:
    """A full-covariance 4-D Gaussian (eigenvalues 0.12 .. 3.4) and six points, one far in the tail."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 4, generator=g, dtype=F64)
    cov = a @ a.T / 4 + 0.1 * torch.eye(4, dtype=F64)
    oracle = GaussianOracle(torch.tensor([0.5, -1.0, 0.3, 1.2], dtype=F64), cov)
    x = oracle.sample(6, generator=g, dtype=F64)
    x[0] += 3.0
    return oracle, x


# Tolerance: rtol 1e-6 on log-density terms of size ~30 nats gives a global error ~1e-4; the prior at
# sigma_max = 1000 with the data mean is off by ~tr(Sigma) / sigma_max^2 ~ 1e-5. Measured: 1.2e-4 nats.
EXACT = dict(sigma_min=1e-3, sigma_max=1000.0, rtol=1e-6, atol=1e-8)


@pytest.fixture(scope="module")
def gauss4_exact(gauss4: tuple[GaussianOracle, torch.Tensor]) -> LikelihoodResult:
    oracle, x = gauss4
    return ode_log_likelihood(oracle, x, divergence="exact", prior_mean=oracle.mean, **EXACT)


def test_gaussian_exact_divergence_matches_closed_form(gauss4, gauss4_exact) -> None:
    oracle, x = gauss4
    r = gauss4_exact
    ref = oracle.log_prob(x, r.sigma_min)
    assert r.log_prob.shape == (6,) and r.divergence == "exact" and r.std_error is None
    assert (r.log_prob - ref).abs().max().item() < 1e-3
    # the noised density at sigma_min = 1e-3 is within 1e-3 of the clean one here (smallest eigenvalue 0.12)
    assert (r.log_prob - oracle.log_prob(x, 0.0)).abs().max().item() < 1e-3
    # the latent reached is the exact ODE map; the bookkeeping fields agree with each other
    x_t = oracle.ode_solution(x, r.sigma_min, r.sigma_max)
    assert ((r.x_T - x_t).abs() / x_t.abs().clamp_min(1.0)).max().item() < 1e-4
    assert torch.allclose(r.log_prob, r.prior_log_prob + r.delta_log_prob)
    assert torch.allclose(r.nll, -r.log_prob)
    assert torch.allclose(r.bits_per_dim, r.nll / (4 * math.log(2)))
    assert r.nfe > 0 and r.n_vjp == 4 * r.nfe and r.steps > 0 and r.seconds > 0
    assert (r.rtol, r.atol, r.method, r.sigma_min, r.sigma_max) == (1e-6, 1e-8, "RK45", 1e-3, 1000.0)


def test_wrong_divergence_sign_is_detected(gauss4, gauss4_exact) -> None:
    """Negative control: subtracting the divergence integral instead of adding it is off by nats."""
    oracle, x = gauss4
    r = gauss4_exact
    flipped = r.prior_log_prob - r.delta_log_prob
    assert (flipped - oracle.log_prob(x, r.sigma_min)).abs().min().item() > 1.0


def test_scaled_denoiser_gives_wrong_density(gauss4, gauss4_exact) -> None:
    """Negative control: a denoiser shrunk by 0.9 is a different flow, so its density is clearly different."""
    oracle, x = gauss4
    bad = ode_log_likelihood(lambda z, s, c=None: 0.9 * oracle(z, s), x, prior_mean=oracle.mean, **EXACT)
    assert (bad.log_prob - gauss4_exact.log_prob).abs().min().item() > 0.5


def test_gaussian_hutchinson_within_standard_error(gauss4) -> None:
    oracle, x = gauss4
    gen = torch.Generator().manual_seed(1)
    r = ode_log_likelihood(
        oracle, x, divergence="hutchinson", hutchinson_samples=24, generator=gen, prior_mean=oracle.mean, **EXACT
    )
    err = r.log_prob - oracle.log_prob(x, r.sigma_min)
    assert r.divergence == "hutchinson" and r.hutchinson_samples == 24 and r.n_vjp == 24 * r.nfe
    assert r.std_error is not None and r.std_error.shape == (6,)
    assert bool((r.std_error > 0.01).all()) and bool((r.std_error < 1.0).all())  # noisy, but informative
    assert (err.abs() / r.std_error).max().item() < 4.0
    # reproducible from the generator (a cheap solve: 2 probes, loose tolerances)
    kw = dict(divergence="hutchinson", hutchinson_samples=2, sigma_max=100.0, rtol=1e-3, atol=1e-3)
    first = ode_log_likelihood(oracle, x, generator=torch.Generator().manual_seed(5), **kw)
    again = ode_log_likelihood(oracle, x, generator=torch.Generator().manual_seed(5), **kw)
    other = ode_log_likelihood(oracle, x, generator=torch.Generator().manual_seed(6), **kw)
    assert torch.equal(again.log_prob, first.log_prob) and not torch.equal(other.log_prob, first.log_prob)


def test_rademacher_is_exact_for_a_diagonal_jacobian_and_auto_picks_hutchinson_above_64() -> None:
    """For a diagonal covariance v^T J v = tr J for every Rademacher probe: one probe is exact (d = 81)."""
    var = torch.linspace(0.2, 2.0, 81, dtype=F64)
    oracle = GaussianOracle(torch.zeros(1, 9, 9, dtype=F64), torch.diag(var))
    x = oracle.sample(2, generator=torch.Generator().manual_seed(0), dtype=F64)
    r = ode_log_likelihood(oracle, x, generator=torch.Generator().manual_seed(0), **EXACT)
    assert r.divergence == "hutchinson" and r.x_T.shape == (2, 1, 9, 9)
    assert (r.log_prob - oracle.log_prob(x, r.sigma_min)).abs().max().item() < 2e-3


def test_prior_var_extra_makes_the_prior_exact_for_isotropic_data() -> None:
    """N(0, lam I) noised to sigma_max is N(0, (lam + sigma_max^2) I): with prior_var_extra = lam the answer is
    exact even at sigma_max = 3; without it the prior error, ~ d lam / (2 sigma_max^2), shows."""
    lam = 0.8
    oracle = GaussianOracle(torch.zeros(3, dtype=F64), lam * torch.eye(3, dtype=F64))
    x = oracle.sample(4, generator=torch.Generator().manual_seed(2), dtype=F64)
    ref = oracle.log_prob(x, 1e-3)
    kw = dict(sigma_min=1e-3, sigma_max=3.0, rtol=1e-7, atol=1e-9)
    good = ode_log_likelihood(oracle, x, prior_var_extra=lam, **kw)
    plain = ode_log_likelihood(oracle, x, **kw)
    assert (good.log_prob - ref).abs().max().item() < 1e-4
    assert (plain.log_prob - ref).abs().max().item() > 0.02


def test_mixture_matches_exact_density() -> None:
    """8 Gaussians of std 0.3 on a circle of radius 2 (the toy2d layout), a non-Gaussian flow."""
    ang = torch.arange(8, dtype=F64) * 2 * math.pi / 8
    oracle = GaussianMixtureOracle(torch.ones(8), 2 * torch.stack([ang.cos(), ang.sin()], 1), 0.09)
    x = oracle.sample(5, generator=torch.Generator().manual_seed(0), dtype=F64)
    x = torch.cat([x, torch.tensor([[0.0, 0.0], [1.0, 1.0], [3.0, -0.5]], dtype=F64)])  # between and outside
    # the mixture's covariance is 2.09 I (isotropic by symmetry), so prior_var_extra = 2.09 at sigma_max = 100
    kw = dict(sigma_min=1e-3, sigma_max=100.0, rtol=1e-6, atol=1e-8, prior_var_extra=2.09)
    r = ode_log_likelihood(oracle, x, divergence="exact", **kw)
    assert (r.log_prob - oracle.log_prob(x, r.sigma_min)).abs().max().item() < 1e-3
    assert (r.log_prob - oracle.log_prob(x, 0.0)).abs().max().item() < 1e-3
    bad = ode_log_likelihood(lambda z, s, c=None: 0.9 * oracle(z, s), x, divergence="exact", **kw)
    assert (bad.log_prob - r.log_prob).abs().min().item() > 0.5


def test_grad_mode_and_inference_mode_are_respected(gauss4, gauss4_exact) -> None:
    oracle, x = gauss4
    kw = dict(sigma_min=1e-3, sigma_max=1000.0, rtol=1e-4, atol=1e-6, prior_mean=oracle.mean)
    base = ode_log_likelihood(oracle, x[:2], **kw)
    with torch.no_grad():
        r1 = ode_log_likelihood(oracle, x[:2], **kw)
    with torch.inference_mode():
        r2 = ode_log_likelihood(oracle, x[:2], **kw)
    assert torch.equal(r1.log_prob, base.log_prob) and torch.equal(r2.log_prob, base.log_prob)
    assert torch.is_grad_enabled()


def test_errors_say_what_to_fix(gauss4) -> None:
    oracle, x = gauss4
    with pytest.raises(DiffsightError, match="max_nfe"):
        ode_log_likelihood(oracle, x, max_nfe=10)
    with pytest.raises(UnknownNameError, match="hutchinson"):
        ode_log_likelihood(oracle, x, divergence="trace")  # type: ignore[arg-type]
    with pytest.raises(UnknownNameError, match="RK45"):
        ode_log_likelihood(oracle, x, method="BDF")
    with pytest.raises(DiffsightError, match="sigma_min"):
        ode_log_likelihood(oracle, x, sigma_min=0.0)
    with pytest.raises(DiffsightError, match="differentiable"):
        ode_log_likelihood(lambda z, s, c=None: oracle(z, s).detach(), x)
    with pytest.raises(DiffsightError, match="batch"):
        ode_log_likelihood(oracle, x[0])
    with pytest.raises(DiffsightError, match="prior_mean"):
        ode_log_likelihood(oracle, x, prior_mean=torch.zeros(3))


def test_digits_model_smoke() -> None:
    """The shipped digits model (d = 64, Hutchinson with 2 probes, loose tolerances): digits (dequantised to
    their 17 levels) are far more likely than uniform-noise images. The model saw all 1,797 digits in
    training, so these are training digits, not held-out ones."""
    from diffsight.data import load_data
    from diffsight.models import load_model

    model = load_model("digits")
    data = load_data("digits")
    gen = torch.Generator().manual_seed(0)
    digits = uniform_dequantize(data.samples[:3], levels=17, generator=gen)
    noise = torch.rand((3, 1, 8, 8), generator=gen) * 2 - 1
    r = ode_log_likelihood(
        model.denoiser,
        torch.cat([digits, noise]),
        divergence="hutchinson",
        hutchinson_samples=2,
        generator=torch.Generator().manual_seed(1),
        rtol=1e-3,
        atol=1e-3,
    )
    assert r.sigma_min == model.denoiser.sigma_min and r.sigma_max == model.denoiser.sigma_max
    assert bool(torch.isfinite(r.log_prob).all()) and r.std_error is not None and 0 < r.nfe < 500
    bpd = bits_per_dim(r.nll, 64, levels=17)
    assert bpd[:3].max().item() < 3.5  # measured ~2.1-2.5 bits/dim; uniform over 17 levels is log2(17) = 4.09
    assert bpd[3:].min().item() > 6.0  # measured ~8.7-8.9: worse than uniform, as it should be on noise
    assert r.log_prob[:3].min().item() > r.log_prob[3:].max().item() + 100.0
    assert all(p.grad is None for p in model.denoiser.parameters())
