"""Membership inference (loss-at-sigma attack): known answers on oracles, the exact AUC, the shipped digits model."""

from __future__ import annotations

import json
import math

import pytest
import torch
from sklearn.metrics import roc_auc_score

from diffsight.audit.membership import DEFAULT_SIGMAS, membership_inference, roc_auc, tpr_at_fpr
from diffsight.errors import DiffsightError, ShapeError
from diffsight.oracles import EmpiricalOracle, GaussianOracle

pytestmark = pytest.mark.usefixtures("one_thread")

N = 500  # members and non-members each


@pytest.fixture(scope="module")
def gaussian_sets() -> tuple[torch.Tensor, torch.Tensor]:
    """Members and non-members: two independent sets of N draws from one correlated 2-D Gaussian."""
    g = torch.Generator().manual_seed(1)
    truth = GaussianOracle(torch.tensor([0.5, -0.3]), torch.tensor([[1.0, 0.6], [0.6, 0.8]]))
    return truth.sample(N, generator=g), truth.sample(N, generator=g)


# --- the AUC and TPR statistics ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("n_pos", "n_neg", "levels"), [(50, 70, None), (200, 31, 5), (1, 9, 3), (300, 300, 2)])
def test_auc_matches_sklearn(n_pos: int, n_neg: int, levels: int | None) -> None:
    g = torch.Generator().manual_seed(n_pos + n_neg)
    pos = torch.randn(n_pos, generator=g, dtype=torch.float64) + 0.4
    neg = torch.randn(n_neg, generator=g, dtype=torch.float64)
    if levels is not None:  # coarse scores: many ties
        pos, neg = (pos * levels / 3).round(), (neg * levels / 3).round()
    labels = [1] * n_pos + [0] * n_neg
    expected = roc_auc_score(labels, torch.cat([pos, neg]).numpy())
    assert roc_auc(pos, neg) == pytest.approx(expected, abs=1e-12)


def test_auc_counts_ties_half() -> None:
    assert roc_auc(torch.ones(7), torch.ones(5)) == 0.5
    assert roc_auc(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 0.0])) == pytest.approx((1 + 1 + 0.5 + 1) / 4)
    assert roc_auc(torch.tensor([3.0, 4.0]), torch.tensor([1.0, 2.0])) == 1.0
    assert roc_auc(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])) == 0.0


def test_tpr_at_fpr_known_answer() -> None:
    nonmember = torch.arange(1.0, 101.0)  # 100 non-members: 1% FPR lets exactly one (loss 1) under the threshold
    member = torch.tensor([0.5, 1.0, 1.5, 2.0, 50.0])  # below 2 (strict): 0.5, 1.0, 1.5
    assert tpr_at_fpr(member, nonmember, 0.01) == pytest.approx(3 / 5)
    assert tpr_at_fpr(member, nonmember, 0.005) == pytest.approx(1 / 5)  # no non-member may pass: loss < 1
    tied = torch.ones(100)  # every non-member ties the threshold: a strict threshold keeps the FPR at 0
    assert tpr_at_fpr(torch.ones(10), tied, 0.01) == 0.0


# --- the attack on oracles with known answers -------------------------------------------------------------------


def test_gaussian_fit_leaks_nothing_empirical_oracle_leaks_all(
    gaussian_sets: tuple[torch.Tensor, torch.Tensor],
) -> None:
    """A Gaussian fitted on the members (5 parameters from 500 points) cannot tell them from fresh draws.

    Under no leakage the AUC of 500 vs 500 has standard deviation sqrt((n1 + n0 + 1) / (12 n1 n0)) = 0.018, so
    |AUC - 0.5| < 0.1 is a 5-sigma band that holds at every one of the 9 levels; the fit's own leakage (members
    sit a Mahalanobis distance d (N-1)/N from the fitted mean, fresh draws about d (N+1)/(N-d-2)) is O(d/N) = 0.004
    here. The empirical oracle snaps a member back onto itself at small sigma (loss ~ 0) and a non-member onto its
    nearest training point (loss = its squared distance), so its AUC must be near 1 there.
    """
    members, nonmembers = gaussian_sets
    fit = GaussianOracle(members.double().mean(0), torch.cov(members.double().T))
    gauss = membership_inference(fit, members, nonmembers)
    emp = membership_inference(EmpiricalOracle(members), members, nonmembers)
    print("\nsigma      ", [f"{s:g}" for s in gauss.sigmas])
    print("gauss AUC  ", [f"{a:.3f}" for a in gauss.aucs], gauss.auc_interval)
    print("gauss TPR1%", [f"{r.tpr_at_1pct_fpr:.3f}" for r in gauss.per_sigma])
    print("emp   AUC  ", [f"{a:.3f}" for a in emp.aucs], emp.auc_interval)
    print("emp   TPR1%", [f"{r.tpr_at_1pct_fpr:.3f}" for r in emp.per_sigma])

    assert gauss.sigmas == DEFAULT_SIGMAS
    assert all(abs(a - 0.5) < 0.1 for a in gauss.aucs)
    # no leakage: the TPR at 1% FPR is about 0.01 (binomial sd 0.0045 at n = 500); 0.05 is far above chance
    assert all(r.tpr_at_1pct_fpr is not None and r.tpr_at_1pct_fpr <= 0.05 for r in gauss.per_sigma)
    assert all(r.tpr_at_01pct_fpr is None for r in gauss.per_sigma)  # fewer than 1,000 non-members
    assert gauss.auc_interval[0] < 0.5 + 0.1 and gauss.auc_interval[1] > 0.5 - 0.1

    small = emp.per_sigma[0]
    assert small.sigma == 0.01 and small.auc >= 0.95
    assert small.tpr_at_1pct_fpr is not None and small.tpr_at_1pct_fpr >= 0.5
    assert small.member_loss_mean < 0.1 * small.nonmember_loss_mean
    assert emp.best_sigma <= 0.02 and emp.best_auc >= 0.95
    assert emp.auc_interval[0] <= emp.best_auc <= emp.auc_interval[1] and emp.auc_interval[0] > 0.9
    # far above the data scale both oracles return about the mean: the attack loses its signal
    assert abs(emp.per_sigma[-1].auc - 0.5) < 0.1


def test_loss_is_the_mean_squared_error_over_the_seeded_draws() -> None:
    """L(x, sigma) = mean_k |D(x + sigma n_k, sigma) - x|^2 with n_k = randn((K, *event)) from the generator."""
    oracle = GaussianOracle(torch.zeros(3), torch.diag(torch.tensor([1.0, 0.5, 0.2])))
    g = torch.Generator().manual_seed(3)
    members, nonmembers = oracle.sample(4, generator=g), oracle.sample(5, generator=g)
    result = membership_inference(
        oracle, members, nonmembers, sigmas=(0.3, 1.5), draws=3, generator=torch.Generator().manual_seed(7)
    )
    noise = torch.randn((3, 3), generator=torch.Generator().manual_seed(7))  # (K, *event)
    for row, sigma in enumerate((0.3, 1.5)):
        for images, losses in ((members, result.member_losses), (nonmembers, result.nonmember_losses)):
            for i, x in enumerate(images):
                expected = sum((oracle(x[None] + sigma * n, sigma)[0] - x).square().sum() for n in noise) / 3
                assert losses[row, i].item() == pytest.approx(expected.item(), rel=1e-5)
    assert result.evaluations == (4 + 5) * 2 * 3


def test_same_draws_for_both_sets_and_batching_changes_nothing(
    gaussian_sets: tuple[torch.Tensor, torch.Tensor],
) -> None:
    members = gaussian_sets[0][:40]
    oracle = EmpiricalOracle(gaussian_sets[0])
    same = membership_inference(oracle, members, members.clone(), sigmas=(0.05, 0.5), bootstrap=0)
    assert torch.equal(same.member_losses, same.nonmember_losses)  # the same draws for members and non-members
    assert same.aucs == (0.5, 0.5)  # every pair ties
    assert all(math.isnan(v) for v in same.auc_interval)
    small = membership_inference(oracle, members, members, sigmas=(0.05, 0.5), bootstrap=0, batch_size=7)
    torch.testing.assert_close(small.member_losses, same.member_losses, rtol=1e-6, atol=1e-9)
    other = membership_inference(
        oracle, members, members, sigmas=(0.05, 0.5), bootstrap=0, generator=torch.Generator().manual_seed(5)
    )
    assert not torch.allclose(other.member_losses, same.member_losses)  # the noise is really drawn


def test_result_is_json_ready(gaussian_sets: tuple[torch.Tensor, torch.Tensor]) -> None:
    members, nonmembers = gaussian_sets
    result = membership_inference(EmpiricalOracle(members), members[:50], nonmembers[:80], sigmas=(0.01, 1.0))
    report = json.loads(json.dumps(result.to_json()))
    assert report["n_members"] == 50 and report["n_nonmembers"] == 80
    assert [r["sigma"] for r in report["per_sigma"]] == [0.01, 1.0]
    assert report["per_sigma"][0]["tpr_at_1pct_fpr"] is None  # 80 non-members: 1% FPR cannot be resolved
    assert report["cost"]["evaluations"] == (50 + 80) * 2 * 4 and report["cost"]["seconds"] > 0
    assert report["best_sigma"] == 0.01 and "best AUC" in report["summary"]


def test_bad_input_says_what_to_fix(gaussian_sets: tuple[torch.Tensor, torch.Tensor]) -> None:
    members, nonmembers = gaussian_sets[0][:10], gaussian_sets[1][:10]
    oracle = EmpiricalOracle(members)
    with pytest.raises(DiffsightError, match="both"):
        membership_inference(oracle, members, nonmembers, cond_members=torch.zeros(10))
    with pytest.raises(ShapeError, match="one condition per image"):
        membership_inference(oracle, members, nonmembers, cond_members=torch.zeros(9), cond_nonmembers=torch.zeros(10))
    with pytest.raises(ShapeError, match="event shape"):
        membership_inference(oracle, members, torch.zeros(10, 3))
    with pytest.raises(DiffsightError, match="range"):
        membership_inference(oracle, members, nonmembers, sigmas=(0.0, 1.0))
    with pytest.raises(DiffsightError, match="empty"):
        membership_inference(oracle, members, nonmembers, sigmas=())
    with pytest.raises(DiffsightError, match="at least one"):
        roc_auc(torch.ones(3), torch.ones(0))


# --- the shipped digits model -----------------------------------------------------------------------------------


def test_digits_model_members_against_held_out() -> None:
    """180 trained-on digits against the 180 held out, each conditioned on its label.

    A negative control runs the same attack on two disjoint samples of *training* digits: it must find nothing
    (|AUC - 0.5| < 0.15, five standard deviations of a 180-vs-180 AUC at 0.03), so what the attack finds on
    held-out digits is membership, not a quirk of the loss.
    """
    from diffsight.metrics.model_eval import heldout_data_of, training_data_of
    from diffsight.models import load_model

    model = load_model("digits")
    train, heldout = training_data_of(model), heldout_data_of(model)
    order = torch.randperm(len(train.samples), generator=torch.Generator().manual_seed(0))
    a, b = order[:180], order[180:360]
    sigmas = (0.05, 0.1, 0.5, 2.0)
    with torch.no_grad():
        attack = membership_inference(
            model.denoiser,
            train.samples[a],
            heldout.samples,
            sigmas=sigmas,
            draws=2,
            cond_members=train.labels[a],
            cond_nonmembers=heldout.labels,
            bootstrap=300,
        )
        control = membership_inference(
            model.denoiser,
            train.samples[a],
            train.samples[b],
            sigmas=sigmas,
            draws=2,
            cond_members=train.labels[a],
            cond_nonmembers=train.labels[b],
            bootstrap=0,
        )
    print("\n" + attack.summary())
    for r, c in zip(attack.per_sigma, control.per_sigma, strict=True):
        print(
            f"sigma {r.sigma:<5g} AUC {r.auc:.3f}  TPR@1%FPR {r.tpr_at_1pct_fpr:.3f}  loss member "
            f"{r.member_loss_mean:.3f} held-out {r.nonmember_loss_mean:.3f}   control AUC {c.auc:.3f}"
        )
    print(f"cost: {attack.evaluations} evaluations, {attack.seconds:.2f} s")
    assert all(math.isfinite(a) and 0.0 <= a <= 1.0 for a in attack.aucs)
    assert 0.5 <= attack.best_auc <= 1.0
    assert attack.auc_interval[0] <= attack.best_auc <= attack.auc_interval[1]
    assert all(abs(c - 0.5) < 0.15 for c in control.aucs)
