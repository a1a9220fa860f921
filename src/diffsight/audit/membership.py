"""Membership inference by the loss-at-sigma attack (Carlini et al. 2023, sec. 6; Matsumoto et al. 2023).

A model that has memorized its training set denoises those images better than images it never saw. For each
candidate image x and noise level sigma the attack measures the denoising loss

    L(x, sigma) = (1/K) sum_k || D(x + sigma n_k, sigma, cond) - x ||^2            (squared norm over the image)

with K fixed noise draws n_k ~ N(0, I), and calls x a member when L is below a threshold (Carlini et al. 2023,
"Extracting Training Data from Diffusion Models", sec. 6.1, the loss threshold attack; Matsumoto et al. 2023,
"Membership Inference Attacks against Diffusion Models", who find intermediate noise levels work best). Members
should have lower loss; how well the threshold separates them is the ROC curve of -L, summarised by

- the ROC AUC, computed exactly as the Mann-Whitney statistic: the probability that a random non-member has a
  higher loss than a random member, ties counted half;
- the TPR at a low FPR (1%, and 0.1% when there are at least 1,000 non-members), the number Carlini et al.
  argue matters for privacy: an attack that identifies a few members with certainty is a leak even at AUC 0.5.

Known answers (shared/research/xai.md, sec. 17, check 6): the empirical oracle memorizes by construction and
reaches AUC near 1 at small sigma; a Gaussian fitted on the members (few parameters, many points) cannot tell a
member from a fresh draw of the same Gaussian, so its AUC is about 0.5.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from diffsight.errors import DiffsightError, ShapeError

__all__ = ["DEFAULT_SIGMAS", "MembershipResult", "SigmaMembership", "membership_inference", "roc_auc", "tpr_at_fpr"]

DEFAULT_SIGMAS: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
"""Log-spaced (1-2-5 series) noise levels for data scaled to [-1, 1] (sigma_data about 0.5).

Below 0.01 the noise is under one 8-bit quantisation step (2/255) and any denoiser returns nearly its input
(c_skip -> 1), so the loss says nothing about the model. Above 5 (ten times sigma_data) the noisy image is almost
pure noise and D returns about the (class) mean, so the loss is the distance to the mean, the same for members
and non-members. The memorization signal lives in between, where the posterior still spans a few training
images; which sigma is best depends on the model and the data density (Carlini et al. 2023, sec. 6.1, and
Matsumoto et al. 2023 find intermediate timesteps best), so the attack scans them all and reports each."""

_FPRS: tuple[float, ...] = (0.01, 0.001)


def _ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks of a 1-D tensor, tied values sharing the average of their ranks."""
    order = torch.argsort(values)
    sorted_values = values[order]
    _, counts = torch.unique_consecutive(sorted_values, return_counts=True)
    ends = torch.cumsum(counts, 0).double()  # last 1-based rank of each group of ties
    average = ends - (counts.double() - 1) / 2  # (groups,)
    ranks = torch.empty_like(values, dtype=torch.float64)
    ranks[order] = torch.repeat_interleave(average, counts)
    return ranks


def roc_auc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """Exact ROC AUC of scores where higher means "positive": P(s_pos > s_neg) + P(s_pos = s_neg) / 2.

    Computed through the Mann-Whitney U statistic, U = R_pos - n_pos (n_pos + 1) / 2 with R_pos the sum of the
    positives' average ranks in the pooled sample, and AUC = U / (n_pos n_neg) (Hanley & McNeil 1982, eq. 2).
    O(n log n) time and O(n) memory, ties counted half.
    """
    pos = torch.as_tensor(positive).detach().reshape(-1).double().cpu()
    neg = torch.as_tensor(negative).detach().reshape(-1).double().cpu()
    if pos.numel() == 0 or neg.numel() == 0:
        raise DiffsightError("roc_auc needs at least one positive and one negative score")
    if not (torch.isfinite(pos).all() and torch.isfinite(neg).all()):
        raise DiffsightError("roc_auc got a non-finite score; check the losses for NaN or inf")
    n_pos, n_neg = pos.numel(), neg.numel()
    r_pos = _ranks(torch.cat([pos, neg]))[:n_pos].sum().item()
    return (r_pos - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def tpr_at_fpr(member_loss: torch.Tensor, nonmember_loss: torch.Tensor, fpr: float) -> float:
    """Fraction of members caught by the loss threshold that flags at most ``fpr`` of the non-members.

    With non-member losses sorted ascending, k = floor(fpr * n_nonmembers) of them may fall below the threshold;
    the threshold is the (k+1)-th smallest, used strictly (``loss < t``), so the realised FPR is at most ``fpr``
    even with ties (conservative, as in Carlini et al. 2022, "Membership inference from first principles").
    """
    if not 0.0 < fpr < 1.0:
        raise DiffsightError(f"fpr must lie in (0, 1), got {fpr}")
    neg = torch.sort(torch.as_tensor(nonmember_loss).detach().reshape(-1).double().cpu()).values
    pos = torch.as_tensor(member_loss).detach().reshape(-1).double().cpu()
    if pos.numel() == 0 or neg.numel() == 0:
        raise DiffsightError("tpr_at_fpr needs at least one member and one non-member loss")
    k = math.floor(fpr * neg.numel())
    return (pos < neg[k]).double().mean().item()


@dataclass(frozen=True)
class SigmaMembership:
    """The attack at one noise level: AUC, TPR at low FPR (None when too few non-members), loss statistics."""

    sigma: float
    auc: float
    tpr_at_1pct_fpr: float | None
    tpr_at_01pct_fpr: float | None
    member_loss_mean: float
    member_loss_std: float
    nonmember_loss_mean: float
    nonmember_loss_std: float

    def to_json(self) -> dict[str, Any]:
        return {
            "sigma": self.sigma,
            "auc": self.auc,
            "tpr_at_1pct_fpr": self.tpr_at_1pct_fpr,
            "tpr_at_0.1pct_fpr": self.tpr_at_01pct_fpr,
            "member_loss_mean": self.member_loss_mean,
            "member_loss_std": self.member_loss_std,
            "nonmember_loss_mean": self.nonmember_loss_mean,
            "nonmember_loss_std": self.nonmember_loss_std,
        }


@dataclass(frozen=True)
class MembershipResult:
    """Outcome of :func:`membership_inference`.

    ``member_losses`` (S, n_members) and ``nonmember_losses`` (S, n_nonmembers) hold L(x, sigma) per noise level
    and image. ``best_sigma`` maximises the AUC; its AUC is optimistic by the choice among S levels (a winner's
    curse of about one standard error, sqrt((n1 + n0 + 1) / (12 n1 n0)) under no leakage), and
    ``auc_interval`` is a percentile bootstrap interval of the AUC at that sigma (members and non-members
    resampled separately). ``evaluations`` counts denoiser rows (images x sigmas x draws); ``seconds`` is wall time.
    """

    per_sigma: tuple[SigmaMembership, ...]
    member_losses: torch.Tensor
    nonmember_losses: torch.Tensor
    best_sigma: float
    best_auc: float
    auc_interval: tuple[float, float]
    confidence: float
    draws: int
    evaluations: int
    seconds: float

    @property
    def sigmas(self) -> tuple[float, ...]:
        return tuple(r.sigma for r in self.per_sigma)

    @property
    def aucs(self) -> tuple[float, ...]:
        return tuple(r.auc for r in self.per_sigma)

    @property
    def best(self) -> SigmaMembership:
        return self.per_sigma[self.sigmas.index(self.best_sigma)]

    def summary(self) -> str:
        """One line for a report."""
        lo, hi = self.auc_interval
        tpr = self.best.tpr_at_1pct_fpr
        tpr_text = "n/a (fewer than 100 non-members)" if tpr is None else f"{tpr:.3f}"
        return (
            f"membership inference: best AUC {self.best_auc:.3f} ({self.confidence:.0%} interval {lo:.3f}-{hi:.3f}) "
            f"at sigma {self.best_sigma:g}, TPR at 1% FPR {tpr_text}; "
            f"{self.member_losses.shape[1]} members vs {self.nonmember_losses.shape[1]} non-members"
        )

    def to_json(self) -> dict[str, Any]:
        """Plain numbers only (no tensors): what a pipeline gates on."""
        return {
            "method": "loss-at-sigma threshold (Carlini et al. 2023, sec. 6)",
            "n_members": int(self.member_losses.shape[1]),
            "n_nonmembers": int(self.nonmember_losses.shape[1]),
            "draws": self.draws,
            "per_sigma": [r.to_json() for r in self.per_sigma],
            "best_sigma": self.best_sigma,
            "best_auc": self.best_auc,
            "auc_interval": [v if math.isfinite(v) else None for v in self.auc_interval],
            "confidence": self.confidence,
            "cost": {"evaluations": self.evaluations, "seconds": self.seconds},
            "summary": self.summary(),
        }


def _check_images(name: str, images: torch.Tensor) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim < 2 or images.shape[0] < 1:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ShapeError(f"{name} must be a tensor of images shaped (N, ...) with N >= 1, got {shape}")
    if not torch.is_floating_point(images):
        raise ShapeError(f"{name} must be a floating-point tensor (images in the model's data range)")
    return images


def _check_cond(name: str, cond: Any, n: int) -> torch.Tensor | None:
    if cond is None:
        return None
    cond = torch.as_tensor(cond)
    if cond.ndim < 1 or cond.shape[0] != n:
        raise ShapeError(f"{name} needs one condition per image ({n}), got shape {tuple(cond.shape)}")
    return cond


def _losses(
    denoiser: Callable[..., torch.Tensor],
    images: torch.Tensor,
    cond: torch.Tensor | None,
    sigmas: torch.Tensor,
    noise: torch.Tensor,
    batch_size: int,
) -> tuple[torch.Tensor, int]:
    """L(x, sigma) for every image and sigma, shape (S, N), and the number of denoiser rows evaluated.

    Rows enumerate (sigma, draw, image) with the image index fastest; each chunk of ``batch_size`` rows is one
    denoiser call, so memory is bounded whatever N, S and K.
    """
    n, s, k = images.shape[0], sigmas.numel(), noise.shape[0]
    total = s * k * n
    event = (1,) * (images.ndim - 1)
    sums = torch.zeros(total, dtype=torch.float64)
    device = images.device
    for start in range(0, total, batch_size):
        rows = torch.arange(start, min(start + batch_size, total), device=device)
        img, draw, lev = rows % n, (rows // n) % k, rows // (n * k)
        x0 = images[img]  # (b, *event)
        sigma = sigmas[lev]  # (b,)
        x = x0 + sigma.reshape(-1, *event) * noise[draw]
        c = None if cond is None else cond[img.to(cond.device)]
        out = denoiser(x, sigma, c)
        if out.shape != x.shape:
            raise ShapeError(f"the denoiser returned shape {tuple(out.shape)} for input {tuple(x.shape)}")
        sums[start : start + rows.numel()] = (out - x0).detach().flatten(1).double().square().sum(1).cpu()
    return sums.reshape(s, k, n).mean(1), total  # (S, K, N) -> (S, N)


def _bootstrap_auc(
    member: torch.Tensor, nonmember: torch.Tensor, resamples: int, confidence: float, generator: torch.Generator
) -> tuple[float, float]:
    """Percentile interval of the AUC over resamples of members and non-members (each with replacement)."""
    n1, n0 = member.numel(), nonmember.numel()
    values = torch.empty(resamples, dtype=torch.float64)
    for b in range(resamples):
        i = torch.randint(n1, (n1,), generator=generator, device=generator.device).cpu()
        j = torch.randint(n0, (n0,), generator=generator, device=generator.device).cpu()
        values[b] = roc_auc(-member[i], -nonmember[j])
    tail = (1 - confidence) / 2
    q = torch.quantile(values, torch.tensor([tail, 1 - tail], dtype=torch.float64))
    return float(q[0]), float(q[1])


def membership_inference(
    denoiser: Callable[..., torch.Tensor],
    members: torch.Tensor,
    nonmembers: torch.Tensor,
    *,
    sigmas: Sequence[float] = DEFAULT_SIGMAS,
    draws: int = 4,
    cond_members: Any = None,
    cond_nonmembers: Any = None,
    generator: torch.Generator | None = None,
    batch_size: int = 1024,
    bootstrap: int = 1000,
    confidence: float = 0.95,
) -> MembershipResult:
    """Run the loss-at-sigma membership attack of ``members`` (trained on) against ``nonmembers`` (held out).

    Args:
        denoiser: ``D(x, sigma, cond) -> x0_hat`` (the diffsight Denoiser contract).
        members, nonmembers: images (N, *event) in the model's data range, same event shape and device.
        sigmas: noise levels to scan (see :data:`DEFAULT_SIGMAS` for why these); each must lie within the
            denoiser's ``sigma_min``/``sigma_max`` when it declares them.
        draws: K noise draws averaged per image and sigma. The draws n_1..n_K (shaped like one image) are drawn
            once from ``generator`` and shared by every image, members and non-members alike (common random
            numbers), so a difference in loss comes from the image, not the noise.
        cond_members, cond_nonmembers: conditions with one row per image (class labels for a conditional
            model), or None; give both or neither, so both sets are attacked the same way.
        generator: source of the noise draws and of the bootstrap resamples; None means a CPU generator seeded
            with 0, so that a default call is reproducible.
        batch_size: most rows (image x sigma x draw) passed to the denoiser in one call.
        bootstrap: number of bootstrap resamples for ``auc_interval`` (0 skips it: the interval is (nan, nan)).
        confidence: coverage of the bootstrap interval.

    The caller owns device, dtype and grad mode: wrap the call in ``torch.no_grad()`` for a network.
    """
    members = _check_images("members", members)
    nonmembers = _check_images("nonmembers", nonmembers)
    if members.shape[1:] != nonmembers.shape[1:]:
        raise ShapeError(
            f"members and nonmembers must share one event shape, got {tuple(members.shape[1:])} "
            f"and {tuple(nonmembers.shape[1:])}"
        )
    if (cond_members is None) != (cond_nonmembers is None):
        raise DiffsightError("give conditions for both members and nonmembers, or for neither")
    cm = _check_cond("cond_members", cond_members, members.shape[0])
    cn = _check_cond("cond_nonmembers", cond_nonmembers, nonmembers.shape[0])
    levels = [float(s) for s in sigmas]
    if not levels:
        raise DiffsightError("sigmas is empty; pass at least one noise level")
    lo, hi = float(getattr(denoiser, "sigma_min", 0.0)), float(getattr(denoiser, "sigma_max", math.inf))
    for s in levels:
        if not (math.isfinite(s) and s > 0 and lo <= s <= hi):
            raise DiffsightError(f"sigma {s} is not a positive level within the denoiser's range [{lo:g}, {hi:g}]")
    if len(set(levels)) != len(levels):
        raise DiffsightError(f"sigmas repeat a level: {levels}")
    if draws < 1 or batch_size < 1:
        raise DiffsightError(f"draws and batch_size must be at least 1, got {draws} and {batch_size}")
    if bootstrap < 0 or not 0.0 < confidence < 1.0:
        raise DiffsightError(f"need bootstrap >= 0 and 0 < confidence < 1, got {bootstrap} and {confidence}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)

    start = time.perf_counter()
    noise = torch.randn((draws, *members.shape[1:]), generator=generator, device=generator.device)
    noise = noise.to(device=members.device, dtype=members.dtype)  # (K, *event)
    sig = torch.tensor(levels, dtype=members.dtype, device=members.device)  # (S,)
    member_losses, n1 = _losses(denoiser, members, cm, sig, noise, batch_size)
    nonmember_losses, n0 = _losses(denoiser, nonmembers, cn, sig, noise, batch_size)
    if not (torch.isfinite(member_losses).all() and torch.isfinite(nonmember_losses).all()):
        raise DiffsightError("the denoiser returned non-finite values; check the model and the sigmas")

    per_sigma = []
    n_non = nonmembers.shape[0]
    for i, s in enumerate(levels):
        m, n = member_losses[i], nonmember_losses[i]
        tprs = [tpr_at_fpr(m, n, f) if n_non * f >= 1 else None for f in _FPRS]
        per_sigma.append(
            SigmaMembership(
                sigma=s,
                auc=roc_auc(-m, -n),  # lower loss means "member"
                tpr_at_1pct_fpr=tprs[0],
                tpr_at_01pct_fpr=tprs[1],
                member_loss_mean=m.mean().item(),
                member_loss_std=m.std().item() if m.numel() > 1 else 0.0,
                nonmember_loss_mean=n.mean().item(),
                nonmember_loss_std=n.std().item() if n.numel() > 1 else 0.0,
            )
        )
    best = max(range(len(levels)), key=lambda i: per_sigma[i].auc)
    interval = (
        _bootstrap_auc(member_losses[best], nonmember_losses[best], bootstrap, confidence, generator)
        if bootstrap
        else (math.nan, math.nan)
    )
    return MembershipResult(
        per_sigma=tuple(per_sigma),
        member_losses=member_losses,
        nonmember_losses=nonmember_losses,
        best_sigma=levels[best],
        best_auc=per_sigma[best].auc,
        auc_interval=interval,
        confidence=confidence,
        draws=draws,
        evaluations=n1 + n0,
        seconds=time.perf_counter() - start,
    )
