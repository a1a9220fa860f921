"""GuidanceMap: D(x_s | c) - D(x_s | null) per step, against a closed form and on the shipped digits model."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from diffsight.errors import DiffsightError
from diffsight.explain.guidance import GuidanceMap, effect_window
from diffsight.models import load_model
from diffsight.oracles import GaussianOracle
from diffsight.sampling import karras_sigmas
from diffsight.trace import record_trace

MEANS = (0.8, -0.6, 0.1)  # class 0, class 1, null (2): isotropic Gaussians N(m * u_k, v_k I)
VARS = (0.3, 0.6, 1.2)


class ClassOracles(nn.Module):
    """A class-conditional oracle: samples of class k come from their own Gaussian (the last one is the null)."""

    sigma_min = 0.0
    sigma_max = math.inf

    def __init__(self, oracles: list[GaussianOracle]) -> None:
        super().__init__()
        self.oracles = nn.ModuleList(oracles)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1).expand(x.shape[0])
        out = torch.empty_like(x)
        for k, oracle in enumerate(self.oracles):
            rows = cond == k
            if rows.any():
                out[rows] = oracle(x[rows], sigma[rows])
        return out


def class_means(event: tuple[int, ...]) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return [m * torch.randn(event, generator=g, dtype=torch.float64) for m in MEANS]


def conditional_oracle(event: tuple[int, ...]) -> ClassOracles:
    d = math.prod(event)
    eye = torch.eye(d, dtype=torch.float64)
    return ClassOracles([GaussianOracle(mu, v * eye) for mu, v in zip(class_means(event), VARS, strict=True)])


def expected_difference(x: torch.Tensor, sigma: torch.Tensor, label: int, event: tuple[int, ...]) -> torch.Tensor:
    """Closed form: D_k(x, s) = mu_k + v_k / (v_k + s^2) (x - mu_k) for N(mu_k, v_k I); class minus null."""
    mus = class_means(event)
    s2 = sigma.double().reshape((-1,) + (1,) * len(event)) ** 2  # (S, 1, ..., 1)
    x = x.double()

    def d(k: int) -> torch.Tensor:
        return mus[k] + VARS[k] / (VARS[k] + s2) * (x - mus[k])

    return d(label) - d(2)


@pytest.mark.parametrize("event", [(2, 4, 4), (5,)])
@pytest.mark.parametrize("guidance", [1.0, 2.5])
def test_map_equals_the_closed_form_difference(event: tuple[int, ...], guidance: float) -> None:
    oracle = conditional_oracle(event)
    trace = record_trace(
        oracle,
        seed=3,
        n=2,
        labels=[0, 1],
        guidance=guidance,
        sigmas=karras_sigmas(8, 0.02, 20.0),
        event_shape=event,
        null_class=2,
        model_id="class-oracles",
    )
    for sample in (0, 1):
        e = GuidanceMap(trace, oracle, sample=sample, batch_size=5).explain()  # 16 evaluations in 4 batches
        delta = expected_difference(trace.x[:, sample], trace.tensors["sigma"], sample, event)  # (S, *event)
        want_map = delta.pow(2).sum(1).sqrt() if len(event) == 3 else delta.abs()
        torch.testing.assert_close(e.values["difference"].double(), delta, atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(e.values["map"].double(), want_map, atol=2e-5, rtol=1e-5)
        flat = delta.reshape(delta.shape[0], -1)
        torch.testing.assert_close(e.values["magnitude"].double(), flat.pow(2).mean(1).sqrt(), atol=1e-5, rtol=1e-5)
        squared = flat.pow(2).sum(1)
        share = squared / squared.sum()
        torch.testing.assert_close(e.values["share"].double(), share, atol=1e-6, rtol=1e-5)
        steps = trace.tensors["step_index"]
        assert e.values["peak_step"] == int(steps[int(flat.pow(2).mean(1).argmax())])
        assert e.values["centre_step"] == pytest.approx(float((share * steps.double()).sum()), abs=1e-5)
        assert e.diagnostics["nfe"] == 2 * len(steps)
        torch.testing.assert_close(e.values["sigma"], trace.tensors["sigma"])
        assert f"step {e.values['peak_step']} of 8" in e.summary


def test_a_wrong_null_branch_would_be_caught() -> None:
    """Negative control: the closed form tells class-minus-null apart from class-minus-other-class."""
    event = (2, 4, 4)
    trace = record_trace(
        conditional_oracle(event),
        seed=1,
        labels=0,
        sigmas=karras_sigmas(6, 0.02, 20.0),
        event_shape=event,
        null_class=2,
    )
    got = GuidanceMap(trace, conditional_oracle(event)).explain().values["difference"].double()
    wrong = expected_difference(trace.x[:, 0], trace.tensors["sigma"], 0, event) - expected_difference(
        trace.x[:, 0], trace.tensors["sigma"], 1, event
    )  # = D_0 - D_1, what a mixed-up null class would give
    assert (got - wrong).abs().max() > 0.1


def test_effect_window() -> None:
    assert effect_window(torch.tensor([0.05, 0.1, 0.5, 0.3, 0.05])) == (2, 3)  # 0.8 exactly
    assert effect_window(torch.tensor([0.05, 0.1, 0.45, 0.3, 0.1])) == (1, 3)
    assert effect_window(torch.tensor([0.9, 0.05, 0.05])) == (0, 0)
    assert effect_window(torch.tensor([0.25, 0.25, 0.25, 0.25])) == (0, 3)
    assert effect_window(torch.tensor([0.4, 0.0, 0.0, 0.6]), 1.0) == (0, 3)
    assert effect_window(torch.zeros(3)) == (0, 2)


def test_clear_errors_without_labels_or_null_class() -> None:
    event = (3,)
    oracle = GaussianOracle(torch.zeros(3))
    plain = record_trace(oracle, seed=0, sigmas=karras_sigmas(4, 0.02, 10.0), event_shape=event)
    with pytest.raises(DiffsightError, match="no class labels"):
        GuidanceMap(plain, oracle)
    cond = conditional_oracle(event)
    no_null = record_trace(cond, seed=0, labels=0, sigmas=karras_sigmas(4, 0.02, 10.0), event_shape=event)
    with pytest.raises(DiffsightError, match="null class"):
        GuidanceMap(no_null, cond)
    with pytest.raises(DiffsightError, match="sample"):
        GuidanceMap(
            record_trace(cond, labels=0, sigmas=karras_sigmas(4, 0.02, 10.0), event_shape=event, null_class=2),
            cond,
            sample=1,
        )


@pytest.fixture(scope="module")
def digits():
    return load_model("digits")


def test_digits_guided_trace_names_a_step(digits) -> None:
    trace = record_trace(digits, seed=2, labels=3, guidance=3.0, steps=10)
    e = GuidanceMap(trace, digits).explain()
    m = e.values["map"]
    assert m.shape == (10, 8, 8)
    assert torch.isfinite(m).all() and float(m.max()) > 1e-2
    assert e.values["share"].sum().item() == pytest.approx(1.0, abs=1e-5)
    assert e.values["peak_step"] in trace.step_index
    assert "acts most at step" in e.summary and "of 10" in e.summary
    assert e.diagnostics["nfe"] == 20 and e.diagnostics["guidance"] == 3.0
    assert e.values["step"].dtype == torch.long and e.values["sigma"].dtype == torch.float64


def test_digits_null_class_trace_gives_a_zero_map(digits) -> None:
    """Negative control: asking for the null class itself, the condition cannot change anything."""
    # recorded through the bare denoiser: record_trace(LoadedModel, labels=null) fails on the class-name lookup
    trace = record_trace(
        digits.denoiser,
        seed=2,
        labels=digits.null_class,
        guidance=3.0,
        steps=10,
        event_shape=digits.event_shape,
        null_class=digits.null_class,
        model_id="digits",
    )
    e = GuidanceMap(trace, digits).explain()
    assert float(e.values["map"].abs().max()) < 1e-6
    assert "does not change" in e.summary
