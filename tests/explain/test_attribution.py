"""GradientAttribution: closed forms on a Gaussian oracle, completeness and the randomisation check on shapes."""

from __future__ import annotations

import pytest
import torch

from diffsight.errors import DiffsightError
from diffsight.explain.attribution import (
    GradientAttribution,
    ProbeTarget,
    RegionTarget,
    blur,
    randomisation_check,
    randomised_copy,
    spearman,
)
from diffsight.metrics.classifier_io import shipped_classifier
from diffsight.models import load_model
from diffsight.oracles import GaussianOracle
from diffsight.sampling import karras_sigmas
from diffsight.trace import record_trace

EVENT = (2, 4, 4)
D = 32


def gaussian() -> GaussianOracle:
    """N(mu, Sigma) with a dense covariance over (2, 4, 4) images: D(x) = mu + Sigma (Sigma + s^2 I)^-1 (x - mu)."""
    g = torch.Generator().manual_seed(5)
    a = torch.randn(D, D, generator=g, dtype=torch.float64)
    cov = a @ a.T / D + 0.2 * torch.eye(D, dtype=torch.float64)
    return GaussianOracle(0.5 * torch.randn(EVENT, generator=g, dtype=torch.float64), cov)


def region() -> torch.Tensor:
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[1:3, 0:3] = True
    return mask


def denoiser_matrix(cov: torch.Tensor, sigma: float) -> torch.Tensor:
    """A(sigma) = Sigma (Sigma + sigma^2 I)^-1, the Jacobian of the Gaussian posterior mean."""
    return cov @ torch.linalg.inv(cov + sigma**2 * torch.eye(D, dtype=torch.float64))


def euler_matrix(cov: torch.Tensor, sigmas: list[float], start: int) -> torch.Tensor:
    """Jacobian of Euler from sigmas[start] to the end: x' = x + (sn - s)(x - A x) / s per step (sn = 0: x' = A x)."""
    m = torch.eye(D, dtype=torch.float64)
    for s, sn in zip(sigmas[start:-1], sigmas[start + 1 :], strict=True):
        step = torch.eye(D, dtype=torch.float64) + (sn - s) / s * (
            torch.eye(D, dtype=torch.float64) - denoiser_matrix(cov, s)
        )
        m = step @ m
    return m


@pytest.mark.parametrize("baseline", ["zeros", "blur"])
@pytest.mark.parametrize("through", ["x0_hat", "sampler"])
def test_linear_target_on_a_gaussian_has_the_closed_form(baseline: str, through: str) -> None:
    """F(x) = w . x + b, so IG = w * (x - baseline) exactly and saliency = |w| (Sundararajan et al. 2017)."""
    oracle = gaussian()
    trace = record_trace(
        oracle, seed=4, n=2, steps=6, sampler="euler", sigmas=karras_sigmas(6, 0.02, 20.0), event_shape=EVENT
    )
    step, sample = 2, 1
    sigma = float(trace.tensors["sigma"][step])
    mask = region()
    m = mask.expand(EVENT).reshape(D).double()  # the target's weights on the output, all channels
    jac = (
        denoiser_matrix(oracle.cov, sigma)
        if through == "x0_hat"
        else euler_matrix(oracle.cov, trace.sigmas.tolist(), step)
    )
    w = (jac.T @ m).reshape(EVENT)  # dF/dx
    x = trace.x[step, sample]
    b = torch.zeros_like(x) if baseline == "zeros" else blur(x, 1.5)

    ig = GradientAttribution(
        trace,
        oracle,
        step=step,
        target=RegionTarget(mask),
        through=through,
        sample=sample,
        baseline=baseline,
        n_steps=8,
    ).explain()
    want = w * (x.double() - b.double())
    torch.testing.assert_close(ig.values["attribution"].double(), want, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ig.values["map"].double(), want.sum(0), atol=1e-4, rtol=1e-4)
    assert ig.diagnostics["completeness_relative"] < 1e-4
    assert ig.values["step"].tolist() == [step] and ig.values["sigma"].tolist() == [sigma]
    if through == "sampler":
        assert ig.diagnostics["final_mismatch"] < 1e-5  # F's path reproduces the recorded run

    sal = GradientAttribution(
        trace, oracle, step=step, target=RegionTarget(mask), through=through, sample=sample, method="saliency"
    ).explain()
    torch.testing.assert_close(sal.values["attribution"].double(), w.abs(), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(sal.values["map"].double(), w.abs().amax(0), atol=1e-5, rtol=1e-4)


def test_the_closed_form_catches_a_wrong_step() -> None:
    """Negative control: the attribution at step 2 is not the one the closed form gives for step 3."""
    oracle = gaussian()
    trace = record_trace(oracle, seed=4, steps=6, sigmas=karras_sigmas(6, 0.02, 20.0), event_shape=EVENT)
    m = region().expand(EVENT).reshape(D).double()
    x = trace.x[2, 0].double()
    wrong = (denoiser_matrix(oracle.cov, float(trace.tensors["sigma"][3])).T @ m).reshape(EVENT) * x
    got = GradientAttribution(trace, oracle, step=2, target=RegionTarget(region())).explain().values["attribution"]
    assert (got.double() - wrong).abs().max() > 1e-2


def test_stochastic_sampler_replays_its_recorded_noise() -> None:
    """DDPM through the sampler: the recorded draws are replayed, so F(x_s) is the recorded final sample."""
    oracle = gaussian()
    trace = record_trace(
        oracle, seed=9, n=2, steps=6, sampler="ddpm", sigmas=karras_sigmas(6, 0.02, 20.0), event_shape=EVENT
    )
    e = GradientAttribution(
        trace, oracle, step=1, target=RegionTarget(region()), through="sampler", sample=1, n_steps=4
    ).explain()
    assert e.diagnostics["final_mismatch"] < 1e-5
    assert e.diagnostics["completeness_relative"] < 1e-4  # still linear in x: IG is exact
    assert e.diagnostics["nfe_target"] == 5


@pytest.fixture(scope="module")
def shapes():
    return load_model("shapes")


@pytest.fixture(scope="module")
def shapes_trace(shapes):
    return record_trace(shapes, seed=1, steps=6)


@pytest.fixture(scope="module")
def probe(shapes_trace):
    classifier = shipped_classifier("shapes")
    with torch.no_grad():
        shape = int(classifier(shapes_trace.final)["shape"].argmax())
    return ProbeTarget(classifier, "shape", classifier.config["factor_values"]["shape"][shape])


def test_completeness_on_shapes_through_x0_hat(shapes, shapes_trace, probe) -> None:
    for baseline in ("zeros", "blur"):
        e = GradientAttribution(shapes_trace, shapes, step=2, target=probe, baseline=baseline, n_steps=32).explain()
        d = e.diagnostics
        assert d["completeness_relative"] < 1e-3, e.summary
        total = float(e.values["attribution"].sum())
        gap = abs(total - (e.values["target_value"] - d["baseline_value"]))
        assert gap == pytest.approx(d["completeness_error"], abs=1e-4)  # the reported error is the real one
        assert e.values["map"].shape == (16, 16) and torch.isfinite(e.values["map"]).all()
        assert d["nfe"] == 32 + 4  # the IG path, captum's two end points, our F(x) and F(baseline)
        assert "completeness error" in e.summary and "step 2 of 6" in e.summary


def test_through_the_sampler_on_shapes(shapes, shapes_trace, probe) -> None:
    e = GradientAttribution(
        shapes_trace,
        shapes,
        step=3,
        target=probe,
        through="sampler",
        n_steps=24,
        baseline="blur",
        internal_batch_size=12,
    ).explain()
    assert torch.isfinite(e.values["map"]).all() and float(e.values["map"].abs().max()) > 0
    assert e.diagnostics["final_mismatch"] < 1e-4
    assert e.diagnostics["completeness_relative"] < 1e-2, e.summary
    assert e.diagnostics["nfe_target"] == 3


def test_model_parameter_randomisation(shapes, shapes_trace, probe) -> None:
    """Adebayo et al. 2018: the maps must change when the UNet's weights are re-initialised; x itself must not."""
    for method in ("integrated_gradients", "saliency"):
        explainer = GradientAttribution(shapes_trace, shapes, step=2, target=probe, method=method, n_steps=16)
        check = explainer.randomisation_check()
        assert abs(check.rho) < 0.5 and not check.flagged, (method, check.rho)
        assert "passed" in check.summary
    x = shapes_trace.x[2, 0]
    control = randomisation_check(lambda d: (x * 1).sum(0), shapes)  # a "map" that ignores the model
    assert control.rho > 0.99 and control.flagged and "FLAGGED" in control.summary


def test_randomised_copy_reinitialises_and_is_seeded(shapes) -> None:
    a, b = randomised_copy(shapes, seed=3), randomised_copy(shapes, seed=3)
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    trained = dict(shapes.denoiser.named_parameters())
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    changed = [k for k in pa if pa[k].numel() > 1 and not torch.equal(pa[k], trained[k])]
    assert len(changed) > 0.8 * len(pa)
    with pytest.raises(DiffsightError, match="weights"):
        randomised_copy(gaussian())


def test_spearman() -> None:
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert spearman(a, a**3) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(torch.tensor([1.0, 2.0, 2.0, 3.0]), torch.tensor([1.0, 2.0, 3.0, 4.0])) == pytest.approx(0.9486833)


def test_clear_errors(shapes_trace, shapes, probe) -> None:
    with pytest.raises(DiffsightError, match="not recorded"):
        GradientAttribution(shapes_trace, shapes, step=9, target=probe)
    with pytest.raises(DiffsightError, match="method"):
        GradientAttribution(shapes_trace, shapes, step=1, target=probe, method="deeplift")
    with pytest.raises(DiffsightError, match="stride=1"):
        strided = record_trace(gaussian(), steps=6, stride=3, sigmas=karras_sigmas(6, 0.02, 20.0), event_shape=EVENT)
        GradientAttribution(strided, gaussian(), step=3, target=RegionTarget(region()), through="sampler")
    with pytest.raises(DiffsightError, match="not a value"):
        ProbeTarget(shipped_classifier("shapes"), "shape", "hexagon")


def test_guided_digits_trace_through_the_sampler() -> None:
    """A guided, class-conditional run: F uses the same guided denoiser and class, so it reproduces the run."""
    digits = load_model("digits")
    trace = record_trace(digits, seed=6, labels=7, guidance=2.0, steps=6)
    target = ProbeTarget(shipped_classifier("digits"), "digit", 7)
    e = GradientAttribution(
        trace, digits, step=3, target=target, through="sampler", n_steps=16, baseline="blur"
    ).explain()
    assert e.diagnostics["final_mismatch"] < 1e-4
    assert e.diagnostics["completeness_relative"] < 1e-2, e.summary
    assert e.values["map"].shape == (8, 8) and torch.isfinite(e.values["map"]).all()
