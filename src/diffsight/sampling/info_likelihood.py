"""Likelihood and pointwise mutual information from denoising errors (information-theoretic diffusion).

Kong, Brekelmans & Ver Steeg 2023, "Information-Theoretic Diffusion" (ITD, arXiv 2302.03792, eq. 4 and sec. 3),
and Kong et al. 2024, "Interpretable Diffusion via Information Decomposition" (arXiv 2310.07972, eq. 5-7).
In diffsight's EDM convention ``x_sigma = x + sigma n`` with ``snr = 1 / sigma^2`` and log-SNR
``gamma = log snr = -2 log sigma``, ITD's ``x_hat(z, snr)`` is ``D(x + sigma n, sigma)`` and the I-MMSE relation
gives, pointwise,

    -log p(x) = (d/2) log(2 pi e) - 1/2 int_0^inf [ d / (1 + snr) - mmse(x, snr) ] dsnr,
    mmse(x, snr) = E_n || x - D(x + sigma n, sigma) ||^2                      (x-space error)

exactly for the optimal denoiser of p (for a learned one, it is the NLL of the density the denoiser implies,
an upper bound on average). With ``dsnr = snr dgamma``, ``snr / (1 + snr) = sigmoid(gamma)`` and the eps-space
error ``mse_eps = snr * mmse`` the integrand becomes ``d sigmoid(gamma) - mse_eps(x, gamma)``.

**Reference.** For any Gaussian reference with per-coordinate variances ``lam_i`` the same identity, averaged
over the reference, gives its entropy ``h_g = sum_i 1/2 log(2 pi e lam_i)`` and expected eps-MMSE
``sum_i sigmoid(gamma + log lam_i)``; subtracting it from the identity above (the x-independent terms cancel) gives

    -log p(x) = h_g + 1/2 int [ mse_eps(x, gamma) - sum_i sigmoid(gamma + log lam_i) ] dgamma,

exact pointwise for every ``lam``: the reference only changes the variance of the estimator, and outside the
integration window (below) the model's error is taken to equal the reference's. ``reference=None`` is the
N(0, I) reference (``lam = 1``, ITD's per-pixel choice in Info-Decomp); passing the data's per-pixel variances
(a diagonal Gaussian reference) lowers the variance. We use a diagonal reference so that both ``h_g`` and the
integrand split over coordinates: the per-coordinate integrand ``h_i + 1/2 w (snr (x_i - D_i)^2 - ref_i)``,
averaged over the *same* importance samples, is the per-pixel NLL map, which sums exactly to the image NLL.

**Estimator.** ``gamma`` is drawn per image from a truncated logistic (:class:`LogSNRProposal`) with importance
weights ``w = 1 / q``; each (image, gamma) pair gets ``noise_draws`` noise draws (``antithetic=True`` also uses
each draw negated, which cancels the part of the error linear in the noise); ``stderr`` is the CLT standard
error over the ``points`` iid gamma draws (noise draws at one gamma are averaged first). All (image, gamma, noise)
rows go through the network in chunks of at most ``batch_size`` rows. Outside the window the model's error is
taken to equal the reference's (a truncation; ITD's ``clip = 4`` leaves a bias of a few tenths of a nat at
d = 8, measured in the tests, so the default here is ``clip = 8``).

**Control variate** (ours, not in ITD). At high SNR a single noise draw makes ``mse_eps`` fluctuate like
``||n||^2`` (variance ~2d) while the weights grow like ``e^{|u|}``, so the variance of plain ITD grows with the
window. We subtract the mean-zero term ``sum_i ref_i(gamma)^2 (n_i^2 - 1)``: for the reference Gaussian
``ref_i^2`` is exactly the coefficient of ``n_i^2`` in its error, and for any smooth density the error tends to
``n`` as ``sigma -> 0``. It is unbiased for every denoiser; it helps most when ``reference`` matches the data's
variances (on a d = 8 full-covariance Gaussian: standard error 0.31 -> 0.08 nats at clip 4, and it stays ~0.08 at
clip 12 where plain ITD's is ~5). The returned ``mmse`` curve carries the same correction.

**Discrete data.** The NLL is that of the continuous density at ``x``. For quantised images (8-bit, or the
17-level sklearn digits) pass uniformly dequantised ``x`` and convert with
:func:`diffsight.sampling.dequantize.bits_per_dim` (which adds the bin-width term); on the raw lattice the
continuous NLL of a model that has learned the lattice is very negative and depends on the window's upper end.

**Pointwise information** (Info-Decomp): subtracting the identity for ``p(x | y)`` from the one for ``p(x)``,

    i(x; y) = log p(x | y) - log p(x) = 1/2 int E_n [ ||x - D(z | null)||^2 - ||x - D(z | y)||^2 ] dsnr
            = 1/2 int E_n [ snr ( ||x - D(z | null)||^2 - ||x - D(z | y)||^2 ) ] dgamma          ("difference")

and, because ``E[x | z, y] = D(z | y)`` makes ``x - D(z | y)`` orthogonal to any function of ``(z, y)``,
the orthogonality form ``1/2 int E_n [ snr ||D(z | y) - D(z | null)||^2 ] dgamma`` ("orthogonal") has the same
average over ``x ~ p(x | y)`` but not the same value at one ``x``: it is never negative, so it cannot say that
an image fits a wrong condition *worse* than no condition. Both conditions see the same gammas and noise.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from diffsight.errors import DiffsightError, ShapeError
from diffsight.models.denoiser import Denoiser
from diffsight.models.parametrization import per_sample
from diffsight.sampling.logsnr_sampling import LogSNRProposal, denoiser_logsnr_range

__all__ = [
    "InfoLikelihood",
    "PointwiseInformation",
    "info_nll",
    "knowing_logsnr",
    "pointwise_information",
]

PMIForm = Literal["difference", "orthogonal"]


def _image_map(values: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H, W) by summing channels; (B, H, W) stays. Other layouts have no image map."""
    if values.ndim == 4:
        return values.sum(1)  # (B, H, W)
    if values.ndim == 3:
        return values
    raise ShapeError(f"a per-pixel (B, H, W) map needs images (B, C, H, W) or (B, H, W), got {tuple(values.shape)}")


def knowing_logsnr(gammas: torch.Tensor, mmse: torch.Tensor, dim: int) -> torch.Tensor:
    """The log-SNR at which the model "knows" each image, shape (B,), from its curve ``mmse`` (B, P) at ``gammas``.

    Definition: the log-SNR where the denoising error, measured against the noise, reaches half of it,
    ``snr * mmse(x, gamma) / d = 1/2`` (the eps-space error per dimension rises from 0 at low SNR, where noise
    dominates and is easy to predict, to about 1 at high SNR, where the model can no longer tell noise from image).
    For N(mu, lam I) data the expected curve is ``sigmoid(gamma + log lam)``, so the answer is ``-log lam``: the
    model knows the data down to noise of its own size. Higher means the model knows the image in finer detail.
    Estimated robustly from the noisy Monte-Carlo curve by a least-squares fit of a 0/1 step in ``gamma``.
    """
    if gammas.shape != mmse.shape or gammas.ndim != 2:
        raise ShapeError(f"gammas and mmse must both be (B, P), got {tuple(gammas.shape)} and {tuple(mmse.shape)}")
    order = gammas.argsort(dim=1)
    g = gammas.gather(1, order)  # (B, P) ascending
    f = (g.exp() * mmse.gather(1, order) / dim).to(torch.float64)  # eps-space error per dimension
    zero = torch.zeros_like(f[:, :1])
    below = torch.cat([zero, (f**2).cumsum(1)], 1)  # (B, P + 1): cost of calling the first t points "0"
    above = torch.cat([((1 - f) ** 2).flip(1).cumsum(1).flip(1), zero], 1)  # cost of calling the rest "1"
    t = (below + above).argmin(1)  # (B,) step position in 0..P
    left = g.gather(1, (t - 1).clamp_min(0)[:, None])[:, 0]
    right = g.gather(1, t.clamp_max(g.shape[1] - 1)[:, None])[:, 0]
    return torch.where(t == 0, right, torch.where(t == g.shape[1], left, (left + right) / 2))


@dataclass(frozen=True)
class InfoLikelihood:
    """Result of :func:`info_nll`. All values in nats; per-image tensors are (B,) and maps (B, *event).

    Attributes:
        nll: -log p(x), the exact sum of ``pixel_nll``.
        stderr: CLT standard error of ``nll`` over the ``points`` log-SNR draws.
        pixel_nll: per-coordinate NLL (same importance samples), shaped like ``x``.
        pixel_stderr: standard error of each coordinate of ``pixel_nll``.
        gammas: (B, P) the log-SNR draws of each image; ``weights`` (B, P) their importance weights 1/q.
        mmse: (B, P) the denoising-error curve ``E_n ||x - D(x + sigma n, sigma)||^2`` at ``gammas`` (the
            estimate averaged over the noise draws, with the control variate when ``control=True``).
        reference: "standard normal" or "diagonal Gaussian".
        proposal: the log-SNR proposal (and integration window) used.
        nfe: network evaluations per image (points * noise_draws, doubled when antithetic).
        seconds: wall time of the call.
    """

    nll: torch.Tensor
    stderr: torch.Tensor
    pixel_nll: torch.Tensor
    pixel_stderr: torch.Tensor
    gammas: torch.Tensor
    weights: torch.Tensor
    mmse: torch.Tensor
    reference: str
    proposal: LogSNRProposal
    nfe: int
    seconds: float

    @property
    def nll_map(self) -> torch.Tensor:
        """(B, H, W) per-pixel NLL with channels summed; sums to ``nll``."""
        return _image_map(self.pixel_nll)

    def knowing_logsnr(self) -> torch.Tensor:
        """(B,) see :func:`knowing_logsnr`."""
        return knowing_logsnr(self.gammas, self.mmse, self.pixel_nll[0].numel())


@dataclass(frozen=True)
class PointwiseInformation:
    """Result of :func:`pointwise_information`, in nats: ``pmi`` (B,) sums ``pixel_pmi`` (B, *event) exactly.

    ``curve`` (B, P) is the x-space integrand at ``gammas`` (the error gap
    ``||x - D(z|null)||^2 - ||x - D(z|y)||^2`` for form "difference", ``||D(z|y) - D(z|null)||^2`` for
    "orthogonal"); ``nfe`` counts both conditions (2 * points * noise_draws per image, doubled when antithetic);
    both conditions of a row run in the same network call.
    """

    pmi: torch.Tensor
    stderr: torch.Tensor
    pixel_pmi: torch.Tensor
    pixel_stderr: torch.Tensor
    gammas: torch.Tensor
    weights: torch.Tensor
    curve: torch.Tensor
    form: str
    proposal: LogSNRProposal
    nfe: int
    seconds: float

    @property
    def pmi_map(self) -> torch.Tensor:
        """(B, H, W) per-pixel PMI with channels summed; sums to ``pmi``."""
        return _image_map(self.pixel_pmi)


def _proposal(
    denoiser: Denoiser, loc: float | None, scale: float | None, clip: float, proposal: LogSNRProposal | None
) -> LogSNRProposal:
    """The given proposal, or a truncated logistic over ``loc +- clip * scale`` inside the denoiser's range.

    Defaults: when the denoiser has a finite trained range (``sigma_min > 0``, finite ``sigma_max``) the window
    is that range (loc at its middle, scale = half-width / clip): outside it the network was never trained and
    its errors mean nothing. Otherwise (oracles) loc = 0, scale = 1: ITD's values for a white unit-variance
    spectrum. Pass ``loc``/``scale`` from :meth:`LogSNRProposal.from_spectrum` when the data's spectrum is known.
    """
    if proposal is not None:
        if loc is not None or scale is not None:
            raise DiffsightError("pass either proposal= or loc=/scale=, not both")
        return proposal
    limits = denoiser_logsnr_range(denoiser)
    if math.isfinite(limits[0]) and math.isfinite(limits[1]):
        loc = (limits[0] + limits[1]) / 2 if loc is None else loc
        scale = (limits[1] - limits[0]) / (2 * clip) if scale is None else scale
    loc = 0.0 if loc is None else float(loc)
    scale = 1.0 if scale is None else float(scale)
    return LogSNRProposal.window(loc, scale, clip, limits)


def _rows(cond: Any, index: torch.Tensor, n_images: int, device: torch.device, what: str) -> Any:
    """The condition of each row: per-image tensors are gathered, single values broadcast, None stays None."""
    if cond is None:
        return None
    if isinstance(cond, torch.Tensor) and cond.ndim > 0 and cond.shape[0] == n_images:
        return cond.to(device)[index.to(device)]
    value = torch.as_tensor(cond, device=device)
    if value.ndim == 0:
        return value.expand(index.shape[0])
    raise ShapeError(
        f"{what} must be one value or a tensor with one entry per image ({n_images}), got shape {tuple(value.shape)}"
    )


# A contribution turns (x rows, denoiser outputs, gamma, weight) of G groups of K noise draws into the
# per-coordinate integrand (G, d) and the curve value (G,).
_Contribution = Callable[
    [torch.Tensor, torch.Tensor, list[torch.Tensor], torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]
]


@dataclass(frozen=True)
class _Estimate:
    pixel: torch.Tensor  # (B, *event)
    pixel_se: torch.Tensor  # (B, *event)
    total: torch.Tensor  # (B,)
    total_se: torch.Tensor  # (B,)
    gammas: torch.Tensor  # (B, P)
    weights: torch.Tensor  # (B, P)
    curve: torch.Tensor  # (B, P)


def _estimate(
    denoiser: Denoiser,
    x: torch.Tensor,
    conds: list[Any],
    proposal: LogSNRProposal,
    points: int,
    noise_draws: int,
    generator: torch.Generator | None,
    batch_size: int,
    contribution: _Contribution,
    antithetic: bool,
) -> _Estimate:
    """Monte-Carlo average of a per-coordinate integrand over log-SNR draws, batched over images and draws."""
    if x.ndim < 2 or not x.is_floating_point():
        raise ShapeError(f"x must be a floating-point batch (B, *event), got {x.dtype} {tuple(x.shape)}")
    if points < 2 or noise_draws < 1:
        raise DiffsightError(
            f"need points >= 2 (for a standard error) and noise_draws >= 1, got {points}, {noise_draws}"
        )
    draws = 2 * noise_draws if antithetic else noise_draws  # rows per (image, gamma) group
    per_call = batch_size // (len(conds) * draws)  # (image, gamma) groups per network call
    if per_call < 1:
        raise DiffsightError(
            f"batch_size {batch_size} is smaller than one group of {len(conds)} x {draws} rows; "
            "raise batch_size or lower noise_draws"
        )
    n_img, event, device, dtype = x.shape[0], x.shape[1:], x.device, x.dtype
    dim = x[0].numel()
    gammas, weights = proposal.sample((n_img, points), generator=generator, device=device, dtype=dtype)
    sum1 = torch.zeros(n_img, dim, dtype=dtype, device=device)
    sum2 = torch.zeros(n_img, dim, dtype=dtype, device=device)
    totals = torch.zeros(n_img, points, dtype=dtype, device=device)
    curve = torch.zeros(n_img, points, dtype=dtype, device=device)
    for start in range(0, n_img * points, per_call):
        group = torch.arange(start, min(start + per_call, n_img * points), device=device)  # (G,)
        img, pt = group // points, group % points
        rows = img.repeat_interleave(draws)  # (G*K,) image of each row, noise draws fastest
        gam, w = gammas[img, pt], weights[img, pt]  # (G,)
        sigma = (-gam / 2).exp().repeat_interleave(draws)  # (G*K,)
        x0 = x[rows]  # (G*K, *event)
        noise = torch.randn((group.shape[0], noise_draws, *event), generator=generator, device=device, dtype=dtype)
        if antithetic:
            noise = torch.cat([noise, -noise], 1)  # (G, 2 * noise_draws, *event)
        noise = noise.reshape(x0.shape)  # (G*K, *event)
        noisy = x0 + per_sample(sigma, x0) * noise
        cond_rows = [
            _rows(c, rows, n_img, device, name)
            for c, name in zip(conds, ("cond", "null_cond")[: len(conds)], strict=True)
        ]
        if len(conds) == 1:
            outs = [denoiser(noisy, sigma, cond_rows[0])]
        else:  # both conditions in one call, on the same noisy inputs
            both = denoiser(torch.cat([noisy, noisy]), torch.cat([sigma, sigma]), torch.cat(cond_rows))
            outs = list(both.chunk(2))  # [(G*K, *event)] * 2
        values, curve_g = contribution(x0, noise, outs, gam, w)  # (G, d), (G,)
        sum1.index_add_(0, img, values)
        sum2.index_add_(0, img, values * values)
        totals[img, pt] = values.sum(1)
        curve[img, pt] = curve_g
    pixel = sum1 / points  # (B, d)
    pixel_var = ((sum2 - sum1 * sum1 / points) / (points - 1)).clamp_min(0)
    return _Estimate(
        pixel=pixel.reshape(n_img, *event),
        pixel_se=(pixel_var / points).sqrt().reshape(n_img, *event),
        total=pixel.sum(1),
        total_se=totals.std(1) / math.sqrt(points),
        gammas=gammas,
        weights=weights,
        curve=curve,
    )


def _grouped_mean(values: torch.Tensor, groups: int) -> torch.Tensor:
    """(G*K, *event) -> (G, d): mean over the K noise draws of each (image, gamma) group."""
    return values.reshape(groups, -1, values[0].numel()).mean(1)


def info_nll(
    denoiser: Denoiser,
    x: torch.Tensor,
    *,
    cond: Any = None,
    points: int = 128,
    noise_draws: int = 1,
    generator: torch.Generator | None = None,
    loc: float | None = None,
    scale: float | None = None,
    clip: float = 8.0,
    proposal: LogSNRProposal | None = None,
    reference: torch.Tensor | None = None,
    antithetic: bool = False,
    control: bool = True,
    batch_size: int = 512,
) -> InfoLikelihood:
    """Pointwise negative log-likelihood -log p(x) in nats, with per-pixel maps (ITD; see the module docstring).

    Args:
        denoiser: ``D(x, sigma, cond) -> x0_hat``; its ``sigma_min``/``sigma_max`` bound the log-SNR window.
        x: (B, *event) points to score (dequantised, for discrete data).
        cond: one condition for all images, or one per image (tensor (B, ...)), or None.
        points: log-SNR draws per image (the Monte-Carlo sample size of ``stderr``).
        noise_draws: noise draws per (image, log-SNR) pair, averaged before the CLT.
        generator: the source of the log-SNR draws and the noise.
        loc, scale, clip: the truncated logistic proposal ``u = (gamma - loc) / scale in [-clip, clip]``,
            intersected with the denoiser's trained range; defaults in :func:`_proposal`.
        proposal: a ready :class:`LogSNRProposal` instead of loc/scale/clip.
        reference: per-coordinate variances (event-shaped or (d,)) of a diagonal Gaussian reference (the data's
            pixel variances lower the variance); None for N(0, I). The estimate's expectation does not depend on it.
        antithetic: also evaluate every noise draw negated (2x the evaluations; see the module docstring).
        control: subtract the mean-zero noise-energy control variate (module docstring).
        batch_size: most rows (image, gamma, noise draw) per network call.
    """
    started = time.perf_counter()
    prop = _proposal(denoiser, loc, scale, clip, proposal)
    dim = x[0].numel() if x.ndim >= 2 else 0
    if reference is None:
        log_lam = torch.zeros(dim, dtype=x.dtype, device=x.device)
        ref_name = "standard normal"
    else:
        lam = torch.as_tensor(reference, dtype=x.dtype, device=x.device).reshape(-1)
        if lam.numel() != dim or bool((lam <= 0).any()):
            raise ShapeError(f"reference must hold {dim} positive variances (one per coordinate of x)")
        log_lam = lam.log()
        ref_name = "diagonal Gaussian"
    entropy = 0.5 * (math.log(2 * math.pi * math.e) + log_lam)  # (d,) h_i of the reference

    def contribution(
        x0: torch.Tensor, noise: torch.Tensor, outs: list[torch.Tensor], gam: torch.Tensor, w: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        err2 = _grouped_mean((x0 - outs[0]) ** 2, gam.shape[0])  # (G, d) x-space error per coordinate
        mse_eps = gam.exp()[:, None] * err2
        ref = torch.sigmoid(gam[:, None] + log_lam)  # (G, d) reference eps-MMSE
        if control:  # mean-zero control variate: the reference's share of the noise energy
            mse_eps = mse_eps - ref**2 * (_grouped_mean(noise**2, gam.shape[0]) - 1)
        return entropy + 0.5 * w[:, None] * (mse_eps - ref), (mse_eps.sum(1) * (-gam).exp())

    est = _estimate(denoiser, x, [cond], prop, points, noise_draws, generator, batch_size, contribution, antithetic)
    return InfoLikelihood(
        nll=est.total,
        stderr=est.total_se,
        pixel_nll=est.pixel,
        pixel_stderr=est.pixel_se,
        gammas=est.gammas,
        weights=est.weights,
        mmse=est.curve,
        reference=ref_name,
        proposal=prop,
        nfe=points * noise_draws * (2 if antithetic else 1),
        seconds=time.perf_counter() - started,
    )


def pointwise_information(
    denoiser: Denoiser,
    x: torch.Tensor,
    cond: Any,
    null_cond: Any,
    *,
    form: PMIForm = "difference",
    points: int = 128,
    noise_draws: int = 1,
    generator: torch.Generator | None = None,
    loc: float | None = None,
    scale: float | None = None,
    clip: float = 8.0,
    proposal: LogSNRProposal | None = None,
    antithetic: bool = False,
    batch_size: int = 512,
) -> PointwiseInformation:
    """Pointwise mutual information ``i(x; y) = log p(x | y) - log p(x)`` in nats, with per-pixel maps.

    Info-Decomp (Kong et al. 2024, eq. 5-7). ``cond`` is y (one value or one per image), ``null_cond`` the
    condition meaning "no condition" (for the shipped class-conditional models, ``LoadedModel.null_class``).
    ``form="difference"`` (default) estimates the pointwise value itself, which is negative when x fits y worse
    than no condition; ``form="orthogonal"`` is Info-Decomp's ``1/2 int snr ||D(z|y) - D(z|null)||^2 dgamma``,
    equal on average over ``x ~ p(x | y)`` and never negative (see the module docstring). Both conditions share
    every log-SNR draw and noise draw, and run in one network call. Other arguments as in :func:`info_nll`.
    """
    started = time.perf_counter()
    if cond is None or null_cond is None:
        raise DiffsightError("pointwise_information needs both cond (y) and null_cond (the 'no condition' value)")
    if form not in ("difference", "orthogonal"):
        raise DiffsightError(f"form must be 'difference' or 'orthogonal', got {form!r}")
    prop = _proposal(denoiser, loc, scale, clip, proposal)

    def contribution(
        x0: torch.Tensor, noise: torch.Tensor, outs: list[torch.Tensor], gam: torch.Tensor, w: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        d_cond, d_null = outs
        if form == "difference":
            gap = _grouped_mean((x0 - d_null) ** 2 - (x0 - d_cond) ** 2, gam.shape[0])  # (G, d)
        else:
            gap = _grouped_mean((d_cond - d_null) ** 2, gam.shape[0])
        return 0.5 * (w * gam.exp())[:, None] * gap, gap.sum(1)

    est = _estimate(
        denoiser, x, [cond, null_cond], prop, points, noise_draws, generator, batch_size, contribution, antithetic
    )
    return PointwiseInformation(
        pmi=est.total,
        stderr=est.total_se,
        pixel_pmi=est.pixel,
        pixel_stderr=est.pixel_se,
        gammas=est.gammas,
        weights=est.weights,
        curve=est.curve,
        form=form,
        proposal=prop,
        nfe=2 * points * noise_draws * (2 if antithetic else 1),
        seconds=time.perf_counter() - started,
    )
