"""generate_samples: batches of samples from a denoiser, reproducible from the caller's generator.

Most checks use closed-form denoisers (Gaussian oracles) so that they are exact and fast; the known answer is the
probability-flow ODE solution of the Gaussian oracle, per sample, and N(mu, Sigma) in distribution.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import moment_errors
from diffsight.errors import DiffsightError, ScheduleError, UnknownNameError
from diffsight.models import EDMPrecond
from diffsight.models.mlp import SigmaMLP
from diffsight.oracles import GaussianOracle
from diffsight.sampling import SAMPLERS, karras_sigmas, sample_heun
from diffsight.sampling.generate import generate_samples

IMG = (1, 8, 8)  # 64 values per sample
K = 3  # classes of the conditional toy denoiser; index K is the null class


pytestmark = pytest.mark.usefixtures("one_thread")


class Bounded(nn.Module):
    """A Gaussian oracle with a finite noise range (the oracle itself spans [0, inf), which a schedule cannot)."""

    def __init__(self, oracle: GaussianOracle, sigma_min: float = 0.002, sigma_max: float = 80.0) -> None:
        super().__init__()
        self.oracle, self.sigma_min, self.sigma_max = oracle, sigma_min, sigma_max
        self.calls = 0

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: object = None) -> torch.Tensor:
        self.calls += 1
        return self.oracle(x, sigma)


class ClassGaussians(nn.Module):
    """Exact denoiser of N(means[c], I) for a class label c per sample; label K (or None) is the null class.

    D(x, sigma | c) = (x + sigma^2 mu_c) / (1 + sigma^2). Classifier-free guidance of scale w then equals the
    exact denoiser of N(mu_null + w (mu_c - mu_null), I).
    """

    sigma_min, sigma_max = 0.002, 80.0

    def __init__(self, event_shape: tuple[int, ...] = IMG) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(42)
        self.register_buffer("means", torch.randn(K + 1, *event_shape, generator=g))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: object = None) -> torch.Tensor:
        labels = torch.full((x.shape[0],), K) if cond is None else torch.as_tensor(cond).long()
        s2 = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1))) ** 2
        return (x + s2 * self.means[labels].to(x.dtype)) / (1 + s2)


def _gauss(event_shape: tuple[int, ...] = IMG) -> Bounded:
    d = 1
    for s in event_shape:
        d *= s
    g = torch.Generator().manual_seed(3)
    a = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    mean = torch.randn(event_shape, generator=g, dtype=torch.float64)
    return Bounded(GaussianOracle(mean, a @ a.T + 0.1 * torch.eye(d, dtype=torch.float64)))


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- basics ---------------------------------------------------------------------------------------------------


def test_shape_dtype_and_finite():
    out = generate_samples(_gauss(), IMG, 5, steps=4, generator=_gen())
    assert out.shape == (5, *IMG) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_n_not_a_multiple_of_batch_size():
    den = _gauss((2,))
    out = generate_samples(den, (2,), 7, steps=3, batch_size=3, generator=_gen())
    assert out.shape == (7, 2)


def test_follows_the_network_dtype():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = SigmaMLP(2, hidden=8, depth=1, emb_dim=4).double()
    den = EDMPrecond(net).requires_grad_(False)
    assert generate_samples(den, (2,), 3, steps=2, generator=_gen()).dtype == torch.float64


def test_explicit_sigmas_override_steps_and_fix_the_start():
    """With ``sigmas`` given, the result is exactly the sampler run on x_T = sigmas[0] * randn(generator)."""
    den = _gauss()
    sigmas = torch.tensor([20.0, 2.0, 0.3, 0.0], dtype=torch.float64)
    out = generate_samples(den, IMG, 4, sampler="heun", sigmas=sigmas, steps=999, generator=_gen(5))
    x = torch.randn((4, *IMG), generator=_gen(5)) * 20.0
    torch.testing.assert_close(out, sample_heun(den, x, sigmas), rtol=0, atol=0)


def test_default_schedule_is_karras_over_the_denoiser_range():
    den = _gauss()
    seen = []
    generate_samples(den, IMG, 2, steps=6, sampler="euler", callback=lambda r: seen.append(r.sigma), generator=_gen())
    expected = karras_sigmas(6, den.sigma_min, den.sigma_max)[:-1].tolist()
    assert seen == pytest.approx(expected, rel=1e-12)


def test_callback_sees_every_step_of_every_batch():
    records = []
    generate_samples(_gauss(), IMG, 5, steps=3, batch_size=2, callback=records.append, generator=_gen())
    assert [r.index for r in records] == [0, 1, 2] * 3
    assert [r.x.shape[0] for r in records] == [2] * 3 + [2] * 3 + [1] * 3


def test_sampler_options_are_passed_through():
    den = _gauss()
    plain = generate_samples(den, IMG, 3, steps=5, sampler="ddim", generator=_gen(1))
    eta = generate_samples(den, IMG, 3, steps=5, sampler="ddim", generator=_gen(1), sampler_options={"eta": 1.0})
    assert (plain - eta).abs().max() > 1e-2


# --- reproducibility ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "ddpm"])
def test_same_seed_same_samples_other_seed_other_samples(sampler):
    den = _gauss()
    a = generate_samples(den, IMG, 4, steps=5, sampler=sampler, generator=_gen(11))
    b = generate_samples(den, IMG, 4, steps=5, sampler=sampler, generator=_gen(11))
    c = generate_samples(den, IMG, 4, steps=5, sampler=sampler, generator=_gen(12))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (a - c).abs().max() > 0.1


def test_every_draw_comes_from_the_callers_generator():
    """DDPM's step noise comes from the caller's generator (it advances past the initial noise), and the global
    RNG is left alone; an ODE sampler draws the initial noise only."""
    den = _gauss()
    sigmas = karras_sigmas(5, den.sigma_min, den.sigma_max)
    after_initial = _gen(3)
    torch.randn((2, *IMG), generator=after_initial)
    expected_next = torch.randn(1, generator=after_initial)

    global_state = torch.get_rng_state()
    g = _gen(3)
    generate_samples(den, IMG, 2, sampler="ddpm", sigmas=sigmas, generator=g)
    assert torch.equal(torch.get_rng_state(), global_state)
    assert not torch.equal(torch.randn(1, generator=g), expected_next)

    g = _gen(3)
    generate_samples(den, IMG, 2, sampler="ddim", sigmas=sigmas, generator=g)
    assert torch.equal(torch.randn(1, generator=g), expected_next)


@pytest.mark.parametrize("batch_size", [1, 3, 5])
def test_batch_splitting_is_invisible_for_deterministic_samplers_on_images(batch_size):
    """Initial noise is drawn batch after batch from one generator; for events of 64 values (a multiple of torch's
    16-value normal block) that stream equals one big draw, so an ODE sampler gives the same samples."""
    den = ClassGaussians()
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    whole = generate_samples(den, IMG, 8, steps=5, sampler="heun", labels=labels, generator=_gen(2))
    split = generate_samples(
        den, IMG, 8, steps=5, sampler="heun", labels=labels, batch_size=batch_size, generator=_gen(2)
    )
    torch.testing.assert_close(split, whole)


def test_batch_splitting_is_invisible_for_deterministic_samplers_on_vectors():
    den = _gauss((2,))
    whole = generate_samples(den, (2,), 8, steps=5, sampler="heun", generator=_gen(2))
    split = generate_samples(den, (2,), 8, steps=5, sampler="heun", batch_size=3, generator=_gen(2))
    torch.testing.assert_close(split, whole)


# --- labels and guidance --------------------------------------------------------------------------------------


def test_labels_reach_the_denoiser_per_sample():
    den = ClassGaussians()
    labels = torch.tensor([2, 0, 1])
    out = generate_samples(den, IMG, 3, steps=20, sampler="heun", labels=labels, generator=_gen())
    # N(mu_c, I) at sigma_max = 80 barely remembers x_T: each sample is nearest to its own class mean
    dist = (out[:, None] - den.means[None, :K]).flatten(2).norm(dim=2)  # (3, K)
    nearest = dist.argmin(1)
    assert torch.equal(nearest, labels)


def test_labels_none_means_the_null_class():
    den = ClassGaussians()
    a = generate_samples(den, IMG, 4, steps=5, generator=_gen(1))
    b = generate_samples(den, IMG, 4, steps=5, labels=torch.full((4,), K), generator=_gen(1))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("labels", [torch.tensor([0, 1]), torch.zeros(5, dtype=torch.long)])
def test_labels_shape_mismatch_is_refused(labels):
    with pytest.raises(DiffsightError, match=r"one label per sample \(4\)"):
        generate_samples(ClassGaussians(), IMG, 4, steps=2, labels=labels)


def test_guidance_needs_labels_and_null_class():
    den = ClassGaussians()
    with pytest.raises(DiffsightError, match="guidance needs"):
        generate_samples(den, IMG, 2, steps=2, guidance=2.0, null_class=K)
    with pytest.raises(DiffsightError, match="guidance needs"):
        generate_samples(den, IMG, 2, steps=2, guidance=2.0, labels=torch.tensor([0, 1]))


def test_guidance_one_is_the_plain_conditional_model():
    den = ClassGaussians()
    labels = torch.tensor([0, 1, 2, 0])
    plain = generate_samples(den, IMG, 4, steps=5, labels=labels, generator=_gen(4))
    one = generate_samples(den, IMG, 4, steps=5, labels=labels, guidance=1.0, null_class=K, generator=_gen(4))
    torch.testing.assert_close(one, plain, rtol=0, atol=0)
    two = generate_samples(den, IMG, 4, steps=5, labels=labels, guidance=2.0, null_class=K, generator=_gen(4))
    assert (two - plain).abs().max() > 0.1


def test_guidance_zero_is_the_unconditional_model():
    den = ClassGaussians()
    labels = torch.tensor([0, 1, 2, 0])
    zero = generate_samples(den, IMG, 4, steps=5, labels=labels, guidance=0.0, null_class=K, generator=_gen(4))
    uncond = generate_samples(den, IMG, 4, steps=5, generator=_gen(4))
    torch.testing.assert_close(zero, uncond)


@pytest.mark.parametrize("w", [0.5, 3.0])
def test_guided_samples_follow_the_closed_form(w):
    """Guidance of scale w on N(mu_c, I) is the exact denoiser of N(mu_null + w (mu_c - mu_null), I)."""
    den = ClassGaussians()
    c = 1
    guided = generate_samples(
        den, IMG, 6, steps=10, sampler="heun", labels=torch.full((6,), c), guidance=w, null_class=K, generator=_gen(9)
    )
    target = ClassGaussians()
    target.means[K] = den.means[K] + w * (den.means[c] - den.means[K])
    expected = generate_samples(target, IMG, 6, steps=10, sampler="heun", generator=_gen(9))
    torch.testing.assert_close(guided, expected, rtol=1e-5, atol=1e-5)


# --- errors ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"n": 0}, "n must be at least 1"), ({"batch_size": 0}, "batch_size"), ({"steps": 0}, "steps must be")],
)
def test_bad_counts_are_refused(kwargs, message):
    args = {"n": 2, "steps": 3, **kwargs}
    with pytest.raises(DiffsightError, match=message):
        generate_samples(_gauss(), IMG, **args)


def test_unknown_sampler_lists_names():
    with pytest.raises(UnknownNameError, match="no_such_sampler") as err:
        generate_samples(_gauss(), IMG, 2, sampler="no_such_sampler")
    for name in SAMPLERS:
        assert name in str(err.value)


def test_infinite_noise_range_needs_explicit_sigmas(gauss2d):
    """The raw oracle spans sigma in [0, inf): the default schedule refuses it; explicit sigmas work."""
    with pytest.raises(ScheduleError, match="finite"):
        generate_samples(gauss2d, (2,), 2, steps=3)
    out = generate_samples(gauss2d, (2,), 2, sigmas=karras_sigmas(3), generator=_gen())
    assert out.shape == (2, 2) and torch.isfinite(out).all()


# --- the known answer -----------------------------------------------------------------------------------------


def test_heun_samples_of_the_gaussian_oracle(gauss2d):
    """4000 samples, Heun at 30 steps: each sample is close to the exact ODE image of its initial noise (and the
    error falls ~4x at 60 steps: second order), and together they have the oracle's mean and covariance
    (s.e. of the mean ~0.02, of the covariance ~0.03)."""
    n = 4000
    x_T = torch.randn((n, 2), generator=_gen(0)) * 80.0
    exact = gauss2d.ode_solution(x_T.double(), 80.0, 0.0)
    errors = {}
    for steps in (30, 60):
        den = Bounded(gauss2d)
        out = generate_samples(den, (2,), n, steps=steps, sampler="heun", batch_size=n, generator=_gen(0))
        assert den.calls == 2 * steps - 1  # Heun: two evaluations per step but the last, all in one batch
        errors[steps] = (out.double() - exact).abs()
        if steps == 30:
            m_err, c_err = moment_errors(out.double(), gauss2d.mean, gauss2d.cov)
            assert m_err < 0.1 and c_err < 0.1
    assert errors[30].mean() < 0.03 and errors[30].max() < 0.15  # measured 0.011 and 0.074
    assert errors[30].mean() / errors[60].mean() > 3  # measured 4.3
    # the moment check has teeth: a shifted oracle's samples miss the mean
    shifted = Bounded(GaussianOracle(gauss2d.mean + 0.3, gauss2d.cov))
    wrong = generate_samples(shifted, (2,), n, steps=30, sampler="heun", batch_size=n, generator=_gen(0))
    assert moment_errors(wrong.double(), gauss2d.mean, gauss2d.cov)[0] > 0.2
