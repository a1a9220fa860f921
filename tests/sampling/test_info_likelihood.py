"""Known answers for the information-theoretic likelihood and pointwise information (xai.md sec. 17, checks 1-2).

Each test can fail: the Gaussian oracles give the exact pointwise NLL and PMI, the scaled denoisers must lose,
and the shipped digits model must tell digits from noise and its true class from a wrong one.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from diffsight.data import load_data
from diffsight.errors import DiffsightError, ShapeError
from diffsight.models import load_model
from diffsight.oracles import GaussianOracle
from diffsight.sampling.info_likelihood import info_nll, knowing_logsnr, pointwise_information
from diffsight.sampling.logsnr_sampling import LogSNRProposal, data_spectrum, denoiser_logsnr_range

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _full_oracle(d: int, seed: int = 0) -> GaussianOracle:
    g = _gen(seed)
    a = torch.randn(d, d, generator=g, dtype=F64)
    cov = a @ a.T / d + 0.05 * torch.eye(d, dtype=F64)  # eigenvalues spread over ~2 decades
    return GaussianOracle(torch.randn(d, generator=g, dtype=F64), cov)


class _Scaled(nn.Module):
    """A deliberately wrong denoiser: the oracle's x0_hat times ``factor`` plus ``bias``."""

    sigma_min, sigma_max = 0.0, math.inf

    def __init__(self, oracle: GaussianOracle, factor: float, bias: float) -> None:
        super().__init__()
        self.oracle, self.factor, self.bias = oracle, factor, bias

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: object = None) -> torch.Tensor:
        return self.oracle(x, sigma) * self.factor + self.bias


class _JointGaussian(nn.Module):
    """x = a * y + n with y ~ N(0, s_y^2 I), n ~ N(0, s_n^2 I). ``cond`` rows are (y, flag): flag 1 gives
    D(x | y) (the oracle N(a y, s_n^2 I)), flag 0 the unconditional D(x) (the oracle N(0, (a^2 s_y^2 + s_n^2) I))."""

    sigma_min, sigma_max = 0.0, math.inf

    def __init__(self, s_y: float, s_n: float, a: float = 1.0) -> None:
        super().__init__()
        self.s_y, self.s_n, self.a = s_y, s_n, a

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        s2 = sigma.reshape(-1, 1) ** 2  # (B, 1)
        mean = self.a * cond[:, :-1]  # (B, d)
        given_y = mean + self.s_n**2 / (self.s_n**2 + s2) * (x - mean)
        v = self.a**2 * self.s_y**2 + self.s_n**2
        return torch.where(cond[:, -1:] > 0, given_y, v / (v + s2) * x)


def test_proposal_matches_itd_formula_and_its_weights_integrate() -> None:
    lam = torch.tensor([0.01, 0.1, 1.0, 4.0], dtype=F64)
    prop = LogSNRProposal.from_spectrum(lam, clip=4.0)
    assert prop.loc == pytest.approx(-lam.log().mean().item())
    assert prop.scale == pytest.approx(math.sqrt(1 + 3 / math.pi**2 * lam.log().var().item()))
    assert (prop.gamma_min, prop.gamma_max) == pytest.approx((prop.loc - 4 * prop.scale, prop.loc + 4 * prop.scale))
    gammas, weights = prop.sample((200_000,), generator=_gen(0), dtype=F64)
    assert torch.allclose(weights, 1 / prop.density(gammas))
    # E_q[w f] = int f over the window, for f = sigmoid'(gamma) (integral sigmoid(hi) - sigmoid(lo)).
    f = torch.sigmoid(gammas) * torch.sigmoid(-gammas)
    exact = torch.sigmoid(torch.tensor(prop.gamma_max)) - torch.sigmoid(torch.tensor(prop.gamma_min))
    assert (weights * f).mean().item() == pytest.approx(exact.item(), rel=0.01)
    # the window never leaves the denoiser's trained range
    edm = SimpleNamespace(sigma_min=0.002, sigma_max=80.0)  # the shipped models' range
    limited = LogSNRProposal.window(0.0, 10.0, 4.0, denoiser_logsnr_range(edm))
    assert limited.gamma_min == pytest.approx(-2 * math.log(80.0))
    assert limited.gamma_max == pytest.approx(-2 * math.log(0.002))


@pytest.mark.parametrize("d", [4, 12])
def test_nll_matches_gaussian_log_density_per_point(d: int) -> None:
    oracle = _full_oracle(d)
    x = oracle.sample(6, generator=_gen(1), dtype=F64)
    exact = -oracle.log_prob(x)
    prop = LogSNRProposal.from_spectrum(oracle.eigvals)
    std = info_nll(oracle, x, points=3000, generator=_gen(2), proposal=prop)
    z = (std.nll - exact) / std.stderr
    assert z.abs().max() < 4.0, z
    assert std.stderr.max() < 0.25  # the estimate is informative, not just uncertain
    # With the data's per-coordinate variances as the reference: same value (only the variance changes).
    ref = info_nll(oracle, x, points=3000, generator=_gen(2), proposal=prop, reference=torch.diagonal(oracle.cov))
    assert ((ref.nll - exact) / ref.stderr).abs().max() < 4.0
    assert ((ref.nll - std.nll).abs() < 3 * torch.maximum(ref.stderr, std.stderr)).all()
    # The per-pixel map sums to the image value exactly.
    torch.testing.assert_close(std.pixel_nll.sum(1), std.nll, rtol=1e-12, atol=1e-10)
    assert std.nfe == 3000 and std.mmse.shape == (6, 3000) and std.gammas.shape == (6, 3000)


def test_itd_clip_4_leaves_a_truncation_bias_our_default_window_does_not() -> None:
    oracle = _full_oracle(8)
    x = oracle.sample(32, generator=_gen(3), dtype=F64)
    exact = -oracle.log_prob(x)
    errs = {}
    for clip in (4.0, 8.0):
        r = info_nll(
            oracle, x, points=400, generator=_gen(4), proposal=LogSNRProposal.from_spectrum(oracle.eigvals, clip)
        )
        errs[clip] = ((r.nll - exact) / r.stderr).mean().item()  # mean z over 32 points: ~N(0, 1/32) if unbiased
    assert abs(errs[8.0]) < 0.7, errs
    assert errs[4.0] > errs[8.0], errs


def test_diagonal_gaussian_pixel_map_is_the_per_coordinate_nll() -> None:
    g = _gen(5)
    var = torch.logspace(-2, 0.5, 16, dtype=F64)[torch.randperm(16, generator=g)]
    mean = torch.randn(1, 4, 4, generator=g, dtype=F64)
    oracle = GaussianOracle(mean, torch.diag(var))
    x = oracle.sample(4, generator=g, dtype=F64)  # (4, 1, 4, 4)
    per_coord = 0.5 * (math.log(2 * math.pi) + var.log() + (x.reshape(4, 16) - mean.reshape(16)) ** 2 / var)
    r = info_nll(oracle, x, points=3000, generator=_gen(6), proposal=LogSNRProposal.from_spectrum(var))
    assert r.pixel_nll.shape == (4, 1, 4, 4) and r.nll_map.shape == (4, 4, 4)
    z = (r.pixel_nll.reshape(4, 16) - per_coord) / r.pixel_stderr.reshape(4, 16)
    assert z.abs().max() < 4.0, z
    assert 0.5 < z.pow(2).mean().sqrt() < 1.5  # the per-pixel standard errors are calibrated
    torch.testing.assert_close(r.nll_map.sum((1, 2)), r.nll, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(r.nll, per_coord.sum(1), rtol=0, atol=4 * r.stderr.max().item())


def test_mmse_curve_and_knowing_logsnr_on_a_one_dimensional_gaussian() -> None:
    s2 = 0.1
    oracle = GaussianOracle(torch.zeros(1, dtype=F64), torch.tensor([[s2]], dtype=F64))
    x = torch.tensor([[0.3], [-0.2]], dtype=F64)
    kw = {"loc": 2.0, "scale": 1.5, "batch_size": 4000}
    r = info_nll(oracle, x, points=12, noise_draws=4000, generator=_gen(7), control=False, **kw)
    u = r.gammas.exp()
    curve = (x**2 + u * s2**2) / (1 + u * s2) ** 2  # xai.md sec. 17, check 1: the pointwise MMSE
    torch.testing.assert_close(r.mmse, curve, rtol=0.1, atol=1e-4)
    # antithetic noise and the control variate with the data's variance as the reference: exact for this oracle
    r = info_nll(oracle, x, points=12, generator=_gen(7), reference=torch.tensor([s2]), antithetic=True, **kw)
    torch.testing.assert_close(r.mmse, curve, rtol=1e-6, atol=1e-12)
    # 1-D integral 1/2 int [1/(1+u) - mmse] du = 1/2 (1 - log s^2 - x^2 / s^2) -> -log N(x; 0, s^2)
    r = info_nll(oracle, x, points=4000, generator=_gen(8), loc=-math.log(s2), scale=1.0)
    exact = 0.5 * (math.log(2 * math.pi * math.e) - (1 - math.log(s2) - x[:, 0] ** 2 / s2))
    assert ((r.nll - exact) / r.stderr).abs().max() < 3.5
    # N(0, lam I) data: the expected error per dimension reaches half the noise at gamma = -log lam; pointwise,
    # where sum_i (u y_i^2 + u^2 lam^2) / (u lam + 1)^2 / d = 1/2 (solved on a fine grid).
    lam = 0.1
    iso = GaussianOracle(torch.zeros(16, dtype=F64), lam * torch.eye(16, dtype=F64))
    xs = iso.sample(8, generator=_gen(9), dtype=F64)
    r = info_nll(iso, xs, points=400, generator=_gen(10), loc=2.0, scale=1.5, reference=torch.full((16,), lam))
    know = r.knowing_logsnr()
    grid = torch.linspace(-4.0, 8.0, 12001, dtype=F64)[:, None, None]  # (G, 1, 1)
    ug = grid.exp()
    f = ((ug * xs.reshape(1, 8, 16) ** 2 + ug**2 * lam**2) / (ug * lam + 1) ** 2).mean(2)  # (G, 8)
    exact_know = grid[(f - 0.5).abs().argmin(0), 0, 0]  # (8,)
    assert (know - exact_know).abs().max() < 0.45, (know, exact_know)
    assert abs(exact_know.mean().item() + math.log(lam)) < 0.5
    assert torch.equal(know, knowing_logsnr(r.gammas, r.mmse, 16))


@pytest.mark.parametrize(("factor", "bias"), [(0.8, 0.0), (1.0, 0.3)])
def test_a_worse_denoiser_gets_a_higher_nll(factor: float, bias: float) -> None:
    oracle = _full_oracle(8)
    x = oracle.sample(16, generator=_gen(11), dtype=F64)
    prop = LogSNRProposal.from_spectrum(oracle.eigvals)
    good = info_nll(oracle, x, points=300, generator=_gen(12), proposal=prop)
    bad = info_nll(_Scaled(oracle, factor, bias), x, points=300, generator=_gen(12), proposal=prop)
    gap = (bad.nll - good.nll).mean()
    se = (bad.stderr**2 + good.stderr**2).sum().sqrt() / x.shape[0]
    assert gap > 5 * se, (gap, se)


def test_pointwise_information_of_jointly_gaussian_variables() -> None:
    d, s_y, s_n, n = 8, 1.0, 0.5, 48
    g = _gen(13)
    y = s_y * torch.randn(n, d, generator=g, dtype=F64)
    x = y + s_n * torch.randn(n, d, generator=g, dtype=F64)
    v = s_y**2 + s_n**2
    exact = 0.5 * (-((x - y) ** 2) / s_n**2 + x**2 / v + math.log(v / s_n**2))  # (n, d) log N(x|y) - log N(x)
    mutual = d / 2 * math.log(1 + s_y**2 / s_n**2)
    cond = torch.cat([y, torch.ones(n, 1, dtype=F64)], 1)
    null = torch.zeros_like(cond)
    denoiser = _JointGaussian(s_y, s_n)
    prop = LogSNRProposal.from_spectrum(torch.tensor([s_n**2, v]))
    # spread of the exact pointwise values: the sample mean's own uncertainty around I(x; y)
    sampling_se = exact.sum(1).std().item() / math.sqrt(n)
    for form in ("difference", "orthogonal"):
        r = pointwise_information(denoiser, x, cond, null, form=form, points=400, generator=_gen(14), proposal=prop)
        torch.testing.assert_close(r.pixel_pmi.sum(1), r.pmi, rtol=1e-12, atol=1e-10)
        mc_se = (r.stderr**2).sum().sqrt().item() / n
        assert abs(r.pmi.mean().item() - mutual) < 3 * math.hypot(mc_se, sampling_se), (form, r.pmi.mean())
        assert r.nfe == 2 * 400
    # only the difference form is the pointwise value (per image and per coordinate)
    diff = pointwise_information(denoiser, x, cond, null, points=400, generator=_gen(14), proposal=prop)
    z = (diff.pmi - exact.sum(1)) / diff.stderr
    assert z.abs().max() < 4.5 and 0.6 < z.pow(2).mean().sqrt() < 1.6, z
    z_pix = (diff.pixel_pmi - exact) / diff.pixel_stderr
    assert z_pix.abs().max() < 5.0
    orth = pointwise_information(
        denoiser, x, cond, null, form="orthogonal", points=400, generator=_gen(14), proposal=prop
    )
    assert ((orth.pmi - exact.sum(1)) / orth.stderr).abs().max() > 10
    assert (orth.pixel_pmi >= 0).all()
    # antithetic noise keeps the answer
    anti = pointwise_information(
        denoiser, x, cond, null, points=200, antithetic=True, generator=_gen(15), proposal=prop
    )
    assert ((anti.pmi - exact.sum(1)) / anti.stderr).abs().max() < 4


def test_a_condition_independent_of_x_carries_no_information() -> None:
    d, n = 8, 16
    g = _gen(16)
    y = torch.randn(n, d, generator=g, dtype=F64)
    x = 0.5 * torch.randn(n, d, generator=g, dtype=F64)  # x = 0 * y + n
    cond = torch.cat([y, torch.ones(n, 1, dtype=F64)], 1)
    r = pointwise_information(
        _JointGaussian(1.0, 0.5, a=0.0), x, cond, torch.zeros_like(cond), points=200, generator=_gen(17), loc=1.0
    )
    assert r.pmi.abs().max() < 1e-9 + 3 * r.stderr.max()
    assert r.pmi.abs().max() < 1e-6


def test_digits_model_smoke() -> None:
    model = load_model("digits")
    data = load_data("digits")
    idx = torch.arange(0, 1797, 225)[:8]  # 8 digits spread over the set (the shipped model saw all of them)
    bin_width = 2 / 16  # sklearn digits: 17 levels, 0..16 -> [-1, 1]
    g = _gen(18)
    digits = (data.samples[idx] + (torch.rand((8, 1, 8, 8), generator=g) - 0.5) * bin_width).clamp(-1, 1)
    noise = torch.rand((8, 1, 8, 8), generator=g) * 2 - 1
    limits = denoiser_logsnr_range(model.denoiser)
    prop = LogSNRProposal.from_spectrum(data_spectrum(data.samples, floor=bin_width**2 / 12), clip=4.0, limits=limits)
    null = torch.full((16,), model.null_class)
    with torch.no_grad():
        r = info_nll(
            model.denoiser, torch.cat([digits, noise]), cond=null, points=48, generator=_gen(19), proposal=prop
        )
    assert torch.isfinite(r.nll).all() and torch.isfinite(r.pixel_nll).all()
    assert r.nll_map.shape == (16, 8, 8)
    torch.testing.assert_close(r.nll_map.sum((1, 2)), r.nll, rtol=1e-4, atol=1e-2)
    assert r.nll[8:].min() > r.nll[:8].max()  # every noise image is less likely than every digit
    assert r.knowing_logsnr()[:8].min() > r.knowing_logsnr()[8:].max()
    labels = data.labels[idx]
    wrong = (labels + 3) % 10
    with torch.no_grad():
        pmi = pointwise_information(
            model.denoiser,
            torch.cat([digits, digits]),
            torch.cat([labels, wrong]),
            model.null_class,
            points=48,
            generator=_gen(20),
            proposal=prop,
        )
    true_pmi, wrong_pmi = pmi.pmi[:8], pmi.pmi[8:]
    se_true = (pmi.stderr[:8] ** 2).sum().sqrt() / 8
    assert true_pmi.mean() > 2 * se_true
    assert (true_pmi > wrong_pmi).all()
    assert pmi.pmi_map.shape == (16, 8, 8)


def test_bad_input_is_refused_with_a_message() -> None:
    oracle = _full_oracle(4)
    x = oracle.sample(2, generator=_gen(21), dtype=F64)
    with pytest.raises(DiffsightError, match="batch_size"):
        info_nll(oracle, x, noise_draws=8, batch_size=4)
    with pytest.raises(ShapeError, match="reference"):
        info_nll(oracle, x, reference=torch.ones(3))
    with pytest.raises(DiffsightError, match="points"):
        info_nll(oracle, x, points=1)
    with pytest.raises(DiffsightError, match="null_cond"):
        pointwise_information(oracle, x, torch.zeros(2), None)
    with pytest.raises(DiffsightError, match="form"):
        pointwise_information(oracle, x, torch.zeros(2), 0, form="ratio")  # type: ignore[arg-type]
    with pytest.raises(DiffsightError, match="window"):
        LogSNRProposal(0.0, 1.0, 3.0, 2.0)
    with pytest.raises(ShapeError, match="one entry per image"):
        pointwise_information(oracle, x, torch.zeros(3, 2), 0)
