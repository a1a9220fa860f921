"""Training-data attribution against the exact ground truth of the least-squares linear denoiser.

Known answers: the linear datamodeling score (LDS, Park et al. 2023) computed with exact retraining, a planted
duplicate, and a negative control (a randomly re-initialised model) (shared/research/xai.md, sec. 17 check 5).
"""

from __future__ import annotations

import copy

import pytest
import torch

from diffsight.audit.data_attribution import TrainingAttribution, linear_datamodeling_score
from diffsight.errors import DiffsightError
from diffsight.oracles.linear import LinearDenoiser

pytestmark = pytest.mark.usefixtures("one_thread")

SIGMAS = torch.logspace(-1, 0.5, 6, dtype=torch.float64)


def _gaussian(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(2, 2, generator=g, dtype=torch.float64) * 0.5 + torch.eye(2, dtype=torch.float64)
    return torch.randn(n, 2, generator=g, dtype=torch.float64) @ mix.T, mix


@pytest.fixture(scope="module")
def setup() -> tuple[LinearDenoiser, torch.Tensor, torch.Tensor]:
    data, mix = _gaussian(200, 0)
    lin = LinearDenoiser(data, SIGMAS, draws=4, generator=torch.Generator().manual_seed(1))
    targets = torch.randn(5, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64) @ mix.T
    return lin, data, targets


def _lds(attribution: TrainingAttribution, targets: torch.Tensor, subsets: int = 100) -> float:
    res = linear_datamodeling_score(
        attribution, targets, num_subsets=subsets, generator=torch.Generator().manual_seed(3)
    )
    return res.lds


def test_lds_without_projection_is_near_perfect(setup) -> None:
    lin, data, targets = setup
    attribution = TrainingAttribution(lin, data, normalize=False).featurize()
    lds = _lds(attribution, targets)
    print(f"LDS loss, no projection: {lds:.3f}")
    assert lds >= 0.9
    norm = _lds(TrainingAttribution(lin, data, normalize=False, output="output_norm").featurize(), targets)
    print(f"LDS output_norm, no projection: {norm:.3f}")
    assert norm >= 0.8
    # TRAK's empirical-Fisher kernel Phi^T Phi is a poor Hessian here: the check separates the two
    emp = _lds(TrainingAttribution(lin, data, normalize=False, kernel="empirical").featurize(), targets)
    print(f"LDS loss, empirical kernel: {emp:.3f}")
    assert emp < lds - 0.2


def test_lds_degrades_gracefully_with_projection(setup) -> None:
    lin, data, targets = setup
    full = _lds(TrainingAttribution(lin, data, normalize=False).featurize(), targets, 60)
    lds = {
        k: _lds(TrainingAttribution(lin, data, normalize=False, projection_dim=k).featurize(), targets, 60)
        for k in (32, 16, 8)
    }
    print(f"LDS by projection dim (P = {sum(p.numel() for p in lin.parameters())}): full {full:.3f}, {lds}")
    assert lds[32] >= 0.85  # moderate k: no collapse
    assert lds[8] >= 0.4
    assert full + 0.02 >= lds[32] and lds[32] + 0.05 >= lds[16] and lds[16] + 0.05 >= lds[8]  # monotone within noise
    assert lds[8] < full - 0.1  # and the projection does cost something (the check can fail)


def test_duplicated_training_image_ranks_first() -> None:
    base, _ = _gaussian(100, 5)
    planted = torch.tensor([[2.5, -2.0]], dtype=torch.float64)
    data = torch.cat([base, planted.expand(20, 2)])  # copies are examples 100..119
    lin = LinearDenoiser(data, SIGMAS, draws=4, generator=torch.Generator().manual_seed(6))
    attribution = TrainingAttribution(lin, data, normalize=False).featurize()
    near = planted + 0.05 * torch.randn(4, 2, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    for target in near:
        _, idx = attribution.top(target, 20)
        assert int(idx[0]) >= 100
        assert (idx >= 100).all(), idx.tolist()  # the copies occupy the top 20 ranks
    # a target far from the copies is not explained by them
    far = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    _, idx = attribution.top(far, 20)
    assert (idx >= 100).sum().item() <= 2


def test_negative_control_random_model_gives_lds_near_zero(setup) -> None:
    lin, data, targets = setup
    random_model = copy.deepcopy(lin)
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        random_model.weight.copy_(torch.randn(random_model.weight.shape, generator=g, dtype=torch.float64))
        random_model.bias.copy_(torch.randn(random_model.bias.shape, generator=g, dtype=torch.float64))
    attribution = TrainingAttribution(random_model, data, normalize=False).featurize()
    res = linear_datamodeling_score(
        attribution, targets, model=lin, num_subsets=100, generator=torch.Generator().manual_seed(3)
    )
    print(f"LDS of a randomly re-initialised model: {res.lds:.3f} per target {res.per_target.tolist()}")
    assert abs(res.lds) < 0.3


def test_api_errors_and_shapes(setup) -> None:
    lin, data, targets = setup
    attribution = TrainingAttribution(lin, data)
    with pytest.raises(DiffsightError, match="featurize"):
        attribution.scores(targets[0])
    attribution.featurize()
    assert attribution.scores(targets[0]).shape == (200,)
    assert attribution.scores(targets).shape == (5, 200)
    torch.testing.assert_close(attribution.scores(targets)[1], attribution.scores(targets[1]))
    with pytest.raises(DiffsightError, match="output function"):
        TrainingAttribution(lin, data, output="margin")


def test_step_scores_along_a_trace() -> None:
    """Journey-TRAK: x0_hat at each recorded step is scored at that step's sigma (float32 model, Trace input)."""
    from diffsight.sampling import karras_sigmas
    from diffsight.trace import record_trace

    base, _ = _gaussian(100, 5)
    planted = torch.tensor([[2.5, -2.0]], dtype=torch.float64)
    data = torch.cat([base, planted.expand(20, 2)])
    lin = LinearDenoiser(data, SIGMAS, draws=4, generator=torch.Generator().manual_seed(6)).float()
    attribution = TrainingAttribution(lin, data.float(), normalize=False).featurize()
    sig = karras_sigmas(6, float(SIGMAS[0]), float(SIGMAS[-1]))
    trace = record_trace(lin, seed=0, n=1, sigmas=sig, sampler="euler", event_shape=(2,))
    per_step = attribution.step_scores(trace)
    assert per_step.shape == (len(trace.step_index), 120)
    assert torch.isfinite(per_step).all()
