"""Probe curves on x0_hat (xai.md 8e) against the closed form of a two-component Gaussian mixture."""

from __future__ import annotations

import pytest
import torch

from diffsight.errors import DiffsightError
from diffsight.explain.commitment import decided_row
from diffsight.explain.factors import ComponentReader, reader_for_model
from diffsight.explain.probes import ProbeCurves, probe_decided_row
from diffsight.models import load_model
from diffsight.oracles import GaussianMixtureOracle
from diffsight.sampling.schedules import karras_sigmas
from diffsight.trace import Trace, record_trace

D, M, STD, N_STEPS = 8, 2.0, 0.1, 30


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def oracle() -> GaussianMixtureOracle:
    mu = torch.ones(D, dtype=torch.float64) * M / D**0.5
    return GaussianMixtureOracle(torch.tensor([0.5, 0.5]), torch.stack([-mu, mu]), STD**2)


def _trace(oracle: GaussianMixtureOracle, seed: int, n: int = 1) -> Trace:
    sigmas = karras_sigmas(N_STEPS, 0.01, 40.0)
    return record_trace(oracle, seed=seed, n=n, sigmas=sigmas, sampler="heun", event_shape=(D,), model_id="mixture")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_probes_agree_after_the_analytic_boundary(oracle: GaussianMixtureOracle, seed: int) -> None:
    trace = _trace(oracle, seed)
    reader = ComponentReader(oracle, value_names=["minus", "plus"])
    ex = ProbeCurves(trace, reader).explain()
    assert ex.method == "probes" and ex.trace_id == trace.id
    probs = ex.values["probabilities"]["component"]
    assert probs.shape == (N_STEPS, 2) and ex.values["value_names"]["component"] == ["minus", "plus"]
    # known answer: the probe is the Bayes reader of x0_hat = D(x_s, sigma_s): sigmoid(2 mu.x0_hat / std^2)
    mu = oracle.components[1].mean
    expected = torch.sigmoid(2 * trace.x0_hat[:, 0].double() @ mu / STD**2).float()
    torch.testing.assert_close(probs[:, 1], expected, atol=1e-5, rtol=1e-4)
    final = 1 if float(trace.final[0].double() @ mu) > 0 else 0
    assert ex.values["final_value"]["component"] == ["minus", "plus"][final]
    # the analytic commitment step (responsibility of the final's component >= 0.9 from there on)
    r = oracle.responsibilities(trace.x[:, 0].double(), trace.tensors["sigma"])[:, final]
    boundary = decided_row(r, 0.9)
    assert boundary > 0
    after = probs[boundary:]
    assert torch.all(after.argmax(1) == final) and torch.all(after[:, final] > 0.9)
    # the caveat, measured: x0_hat is a posterior mean that a clean-sample reader over-reads, so the probe
    # "decides" no later than the analytic step, and is more confident than the exact posterior before it
    # (its logit is |mu|^2 / std^2 = 400 times the posterior's at high sigma)
    probe_step = ex.values["decided_step"]["component"]
    print(f"seed {seed}: analytic step {boundary}, probe step {probe_step}, r at step 0 {float(r[0]):.3f}")
    assert 0 <= probe_step <= boundary
    assert torch.all(probs[:boundary, final].double() >= r[:boundary] - 1e-6)
    assert abs(float(r[0]) - 0.5) < 0.05 and float(probs[0].max()) > 0.8  # near a coin flip, read as confident
    assert "component = " in ex.summary and ex.summary.startswith("probes on x0_hat: decided")
    assert ex.diagnostics["nfe"] == 0


def test_probe_reads_the_chosen_sample(oracle: GaussianMixtureOracle) -> None:
    trace = _trace(oracle, 4, n=3)
    reader = ComponentReader(oracle)
    for sample in range(3):
        ex = ProbeCurves(trace, reader, sample=sample).explain()
        torch.testing.assert_close(
            ex.values["probabilities"]["component"], reader(trace.x0_hat[:, sample])["component"]
        )
    with pytest.raises(DiffsightError, match="sample must lie"):
        ProbeCurves(trace, reader, sample=3)
    with pytest.raises(DiffsightError, match="factor reader"):
        ProbeCurves(trace, None)  # type: ignore[arg-type]


def test_probe_decided_row() -> None:
    p = torch.tensor([[0.5, 0.5], [0.05, 0.95], [0.6, 0.4], [0.08, 0.92], [0.01, 0.99]])
    assert probe_decided_row(p, 1, 0.9) == 3
    assert probe_decided_row(p, 0, 0.9) == -1  # never the final's value at the end
    assert probe_decided_row(p, 1, 0.95) == 4
    assert probe_decided_row(p[:2], 1, 0.9) == 1


def test_shapes_probes_smoke() -> None:
    model = load_model("shapes")
    reader = reader_for_model(model)
    assert reader is not None
    trace = record_trace(model, seed=0, steps=10)
    ex = ProbeCurves(trace, reader).explain()
    assert ex.values["step"].tolist() == list(range(10))
    for f, names in reader.factors.items():
        probs = ex.values["probabilities"][f]
        assert probs.shape == (10, len(names))
        # the last step to sigma 0 returns x0_hat itself: its reading is the final sample's
        assert names[int(probs[-1].argmax())] == ex.values["final_value"][f]
        assert f in ex.summary
        assert ex.values["decided_step"][f] in range(-1, 10)
    ex.to_json()
