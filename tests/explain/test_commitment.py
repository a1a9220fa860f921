"""Commitment by branching against the closed form of a two-component Gaussian mixture (xai.md 17, check 3).

For data ``+-mu + std * xi`` the exact reverse SDE started from x at noise level sigma ends in component k with
probability r_k(x, sigma), the oracle's responsibility. So the agreement curve of branched continuations of a
trajectory must follow r_c(x_s, sigma_s) (c: the component of the trajectory's final), and the step from which
it stays >= 0.9 must match the analytic one within one sampler step. DDPM continuations on the trace's 30-step
Karras schedule approximate the reverse SDE to first order; the measured bias near the boundary is < 0.12.
"""

from __future__ import annotations

import pytest
import torch

import diffsight.explain.commitment as commitment_module
from diffsight.errors import DiffsightError
from diffsight.explain.commitment import (
    PIXELS,
    Commitment,
    bootstrap_interval,
    choose_rows,
    continuation_seed,
    decided_row,
)
from diffsight.explain.factors import ComponentReader, reader_for_model
from diffsight.models import load_model
from diffsight.oracles import GaussianMixtureOracle
from diffsight.sampling.schedules import karras_sigmas
from diffsight.trace import Trace, record_trace

D, M, STD, N_STEPS, K = 8, 2.0, 0.1, 30, 256
CURVE_TOL = 0.2  # max |agreement - r|: measured <= 0.12 for a right implementation, >= 0.30 for the controls
STEPS = [0, *range(8, 24), N_STEPS - 1]  # first, last, and every step around the boundary (15-18 here)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def oracle() -> GaussianMixtureOracle:
    mu = torch.ones(D, dtype=torch.float64) * M / D**0.5  # |mu| = 2: symmetry breaks near sigma ~ 2
    return GaussianMixtureOracle(torch.tensor([0.5, 0.5]), torch.stack([-mu, mu]), STD**2)


def _trace(oracle: GaussianMixtureOracle, seed: int) -> Trace:
    sigmas = karras_sigmas(N_STEPS, 0.01, 40.0)
    return record_trace(oracle, seed=seed, sigmas=sigmas, sampler="heun", event_shape=(D,), model_id="mixture")


def _analytic(oracle: GaussianMixtureOracle, trace: Trace, steps: list[int] = STEPS) -> torch.Tensor:
    """r_c(x_s, sigma_s) at the given (recorded, stride 1) steps, c = the component of the trace's final."""
    c = int(ComponentReader(oracle)(trace.final[:1])["component"].argmax())
    return oracle.responsibilities(trace.x[steps, 0].double(), trace.tensors["sigma"][steps])[:, c]


def _check(agreement: torch.Tensor, analytic: torch.Tensor) -> tuple[bool, int, int, float]:
    """(passes, branching decided step, analytic decided step, max |agreement - analytic|) over STEPS."""
    got, want = (STEPS[decided_row(curve, 0.9)] for curve in (agreement, analytic))
    dev = float((agreement - analytic).abs().max())
    return abs(got - want) <= 1 and dev <= CURVE_TOL, got, want, dev


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_branching_matches_the_analytic_commitment_of_a_mixture(oracle: GaussianMixtureOracle, seed: int) -> None:
    trace = _trace(oracle, seed)
    reader = ComponentReader(oracle)
    ex = Commitment(trace, oracle, reader=reader, steps=STEPS, k=K, seed=1, bootstrap=200).explain()
    analytic = _analytic(oracle, trace)
    agreement = ex.values["agreement"]["component"]
    ok, got, want, dev = _check(agreement, analytic)
    print(f"seed {seed}: analytic step {want}, branching step {got}, max |agreement - r| {dev:.3f}")
    assert ok, (got, want, dev)
    assert STEPS[1] + 2 <= want <= STEPS[-2] - 2  # the boundary lies well inside the branched steps
    assert ex.values["decided_step"]["component"] == got
    assert ex.values["decided_sigma"]["component"] == pytest.approx(float(trace.tensors["sigma"][got]))
    # symmetric mixture: a coin flip from the first step, certain from the last
    assert abs(float(analytic[0]) - 0.5) < 0.05
    assert abs(float(agreement[0]) - 0.5) < 0.1
    assert float(agreement[-1]) == 1.0
    mu = oracle.components[1].mean.float()
    assert ex.values["final_value"]["component"] == ("1" if float(trace.final[0] @ mu) > 0 else "0")
    assert ex.diagnostics["nfe"] == K * sum(N_STEPS - s for s in STEPS)  # ddpm: 1 evaluation per step


def test_negative_controls_fail_the_check(oracle: GaussianMixtureOracle, monkeypatch: pytest.MonkeyPatch) -> None:
    """The known-answer check catches a wrong implementation: shared noise, or a mis-scaled schedule."""
    trace = _trace(oracle, 0)
    reader = ComponentReader(oracle)
    analytic = _analytic(oracle, trace)
    opts = {"reader": reader, "steps": STEPS, "k": K, "seed": 1, "bootstrap": 0}

    # 1. every continuation from a step draws the same noise: agreement jumps between 0 and 1
    with monkeypatch.context() as patch:
        patch.setattr(commitment_module, "continuation_seed", lambda seed, step, j: continuation_seed(seed, step, 0))
        same = Commitment(trace, oracle, **opts).explain().values["agreement"]["component"]
    assert set(same.tolist()) <= {0.0, 1.0}
    ok, _, _, dev = _check(same, analytic)
    print(f"same noise: max |agreement - r| {dev:.3f}")
    assert not ok and dev > 0.4, dev

    # 2. continuations run on a schedule at half the recorded noise levels: they commit too early
    meta = {k: v for k, v in trace.meta.items() if k != "hash"}
    meta["sigmas"] = [0.5 * s for s in meta["sigmas"]]
    shifted = Trace(meta=meta, tensors=trace.tensors)
    early = Commitment(shifted, oracle, **opts).explain().values["agreement"]["component"]
    ok, got, want, dev = _check(early, analytic)
    print(f"halved schedule: analytic step {want}, branching step {got}, max |agreement - r| {dev:.3f}")
    assert not ok and got <= want - 2 and dev > 0.25, (got, want, dev)


@pytest.mark.parametrize(("sampler", "per_step"), [("ddpm", 1), ("pc", 2)])
def test_batched_segments_equal_continuations_run_alone(
    oracle: GaussianMixtureOracle, sampler: str, per_step: int
) -> None:
    """Mixing starting steps in one batch (run in segments) gives each continuation exactly its own run."""
    trace = _trace(oracle, 3)
    steps = [trace.step_index[r] for r in (4, 12, 20)]
    together, counts = Commitment(trace, oracle, steps=steps, k=6, sampler=sampler, batch_size=1000).continuations()
    split, _ = Commitment(trace, oracle, steps=steps, k=6, sampler=sampler, batch_size=5).continuations()
    alone, _ = Commitment(trace, oracle, steps=steps[1:2], k=6, sampler=sampler).continuations()
    torch.testing.assert_close(together, split, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(together[1], alone[0], atol=1e-5, rtol=1e-5)
    assert counts["calls"] == N_STEPS - steps[0]  # one batched sampler step per level
    assert counts["nfe"] == per_step * 6 * sum(N_STEPS - s for s in steps)
    # continuations differ from each other (fresh noise), and a different seed changes them
    assert together[0].std(0).mean() > 0.1
    other, _ = Commitment(trace, oracle, steps=steps, k=6, sampler=sampler, seed=7).continuations()
    assert not torch.allclose(other, together)


def test_bootstrap_intervals_contain_the_estimate_and_shrink_with_k(oracle: GaussianMixtureOracle) -> None:
    trace = _trace(oracle, 0)
    reader = ComponentReader(oracle)
    rows = list(range(8, 16))  # the transition region of seed 0 (analytic boundary at 15)
    widths = {}
    for k in (16, 256):
        ex = Commitment(trace, oracle, reader=reader, steps=rows, k=k, seed=2, bootstrap=1000).explain()
        p = ex.values["agreement"]["component"]
        lo, hi = ex.values["ci_low"]["component"], ex.values["ci_high"]["component"]
        assert torch.all(lo <= p) and torch.all(p <= hi)
        widths[k] = (hi - lo).mean().item()
        if k == 256:  # known answer: the binomial normal interval 2 * 1.96 * sqrt(p (1 - p) / K)
            binomial = (2 * 1.96 * (p * (1 - p) / k).sqrt()).mean().item()
            assert widths[k] == pytest.approx(binomial, rel=0.2)
    print(f"mean 95% width: K=16 {widths[16]:.3f}, K=256 {widths[256]:.3f}")
    assert widths[256] < 0.5 * widths[16]  # ~ 1 / sqrt(K): a quarter, allowing for noise


def test_bootstrap_interval_edge_cases() -> None:
    gen = torch.Generator().manual_seed(0)
    matches = torch.tensor([[True] * 8, [False] * 8, [True, False] * 4])
    lo, hi = bootstrap_interval(matches, 500, gen)
    assert lo[0] == hi[0] == 1.0 and lo[1] == hi[1] == 0.0
    assert lo[2] < 0.5 < hi[2]
    lo, hi = bootstrap_interval(matches, 0, gen)
    assert torch.isnan(lo).all() and torch.isnan(hi).all()


def test_decided_row_and_choose_rows() -> None:
    assert decided_row([0.5, 0.95, 0.8, 0.92, 0.99], 0.9) == 3
    assert decided_row([0.95, 0.97, 1.0], 0.9) == 0
    assert decided_row([0.5, 0.95, 0.7], 0.9) == -1
    assert decided_row([], 0.9) == -1
    assert decided_row([0.95, float("nan"), 0.95], 0.9) == 2
    recorded = list(range(0, 30, 2)) + [29]
    rows = choose_rows(recorded, None)
    assert rows[0] == 0 and rows[-1] == len(recorded) - 1 and 8 <= len(rows) <= 10
    assert choose_rows(recorded, 3) == [0, 8, 15]
    assert choose_rows(recorded, [29, 4, 4]) == [2, 15]
    with pytest.raises(DiffsightError, match="not recorded"):
        choose_rows(recorded, [3])


def test_bad_options_are_refused(oracle: GaussianMixtureOracle) -> None:
    trace = _trace(oracle, 0)
    with pytest.raises(DiffsightError, match="stochastic sampler"):
        Commitment(trace, oracle, sampler="heun")
    with pytest.raises(DiffsightError, match="sample must lie"):
        Commitment(trace, oracle, sample=1)
    with pytest.raises(DiffsightError, match="k "):
        Commitment(trace, oracle, k=0)
    with pytest.raises(DiffsightError, match="in-memory denoiser"):
        Commitment(trace)  # an oracle trace cannot be reloaded: pass the denoiser


def test_pixels_without_a_reader(oracle: GaussianMixtureOracle) -> None:
    trace = _trace(oracle, 0)
    ex = Commitment(trace, oracle, steps=[0, 20, 29], k=8).explain()
    assert list(ex.values["agreement"]) == [PIXELS]
    assert ex.values["distance"].shape == (3, 8)
    agreement = ex.values["agreement"][PIXELS]
    # from pure noise no continuation lands within 0.1 RMS; from the last step (deterministic) all do
    assert float(agreement[0]) == 0.0 and float(agreement[-1]) == 1.0
    assert ex.values["decided_step"][PIXELS] == 29
    assert ex.params["tol"] == 0.1 and "pixels by step 29 of 30" in ex.summary


def test_shapes_smoke() -> None:
    model = load_model("shapes")
    reader = reader_for_model(model)
    trace = record_trace(model, seed=0, steps=10)
    ex = Commitment(trace, model, reader=reader, k=4, steps=3).explain()
    assert ex.method == "commitment" and ex.trace_id == trace.id
    assert ex.values["step"].tolist() == [0, 4, 9] and ex.values["sigma"].dtype == torch.float64
    for f in ("shape", "colour", "size", "position", "background"):
        assert ex.values["agreement"][f].shape == (3,)
        assert ex.values["ci_low"][f].shape == ex.values["ci_high"][f].shape == (3,)
        assert ex.values["value_shares"][f].shape == (3, len(reader.factors[f]))
        assert float(ex.values["agreement"][f][-1]) == 1.0  # the last step to sigma 0 is deterministic
        assert ex.values["final_value"][f] in reader.factors[f]
        assert f in ex.summary
    assert ex.diagnostics["nfe"] == 4 * (10 + 6 + 1) and ex.diagnostics["k"] == 4
    assert ex.summary.startswith("decided: ")
    ex.to_json()  # JSON-ready


def test_digits_conditional_trace_keeps_its_class() -> None:
    model = load_model("digits")
    reader = reader_for_model(model)
    guided = record_trace(model, seed=0, steps=10, labels=3, guidance=2.0)
    ex = Commitment(guided, model, reader=reader, k=8, steps=3).explain()
    agreement = ex.values["agreement"]["digit"]
    assert float(agreement[-1]) == 1.0
    assert ex.values["final_value"]["digit"] == "3"
    # the continuations keep the trace's class and guidance: the digit is fixed from the first step ...
    assert float(agreement[0]) >= 0.75
    # ... while an unconditional trace of the same model is far from decided there (control)
    free = record_trace(model, seed=0, steps=10)
    assert float(Commitment(free, model, reader=reader, k=8, steps=3).explain().values["agreement"]["digit"][0]) < 0.5
