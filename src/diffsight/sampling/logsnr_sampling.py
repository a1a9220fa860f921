"""Importance sampling of the log-SNR for integrals over noise levels (Kong, Brekelmans & Ver Steeg 2023).

Information-theoretic likelihoods (:mod:`diffsight.sampling.info_likelihood`) are 1-D integrals over the
log-SNR ``gamma = log snr = -2 log sigma`` (EDM convention ``x_sigma = x + sigma n``). They are estimated by
Monte Carlo with ``gamma`` drawn from a *truncated logistic* proposal and importance weights ``w = 1 / q``:

    int_{g_lo}^{g_hi} f(gamma) dgamma = E_{gamma ~ q} [ w(gamma) f(gamma) ]

with ``u = (gamma - loc) / scale``, ``q(gamma) = sigmoid(u) sigmoid(-u) / (scale * (sigmoid(u_hi) - sigmoid(u_lo)))``
(ITD, ``utilsitd/utils.py: logistic_integrate``; there the window is symmetric, ``u in [-clip, clip]``, and the
mass ``sigmoid(clip) - sigmoid(-clip) = tanh(clip / 2)``).

Why a logistic: for Gaussian data with covariance eigenvalues ``lam_i`` the expected eps-space MMSE is
``sum_i sigmoid(gamma + log lam_i)``, whose derivative is a mixture of unit logistic densities centred at
``-log lam_i``. :meth:`LogSNRProposal.from_spectrum` matches the mean and variance of that mixture:
``loc = -mean(log lam)`` and, since a logistic of scale ``s`` has variance ``s^2 pi^2 / 3``,
``scale = sqrt(1 + 3 / pi^2 * var(log lam))``. (The ITD code writes ``3 / pi`` instead of ``3 / pi^2``; that does
not match the variance of the mixture, so we use ``pi^2``.) With ``scale >= 1`` the proposal's tails decay no
faster than the integrands (``~ e^{-|gamma|}``), so the weighted integrand stays bounded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from diffsight.errors import DiffsightError, ShapeError

__all__ = ["LogSNRProposal", "data_spectrum", "denoiser_logsnr_range"]


def denoiser_logsnr_range(denoiser: object) -> tuple[float, float]:
    """The log-SNR range ``(-2 log sigma_max, -2 log sigma_min)`` a denoiser was trained on (infinite where the
    denoiser has no such attribute, or ``sigma_min = 0`` / ``sigma_max = inf``, as for the oracles)."""
    s_min = float(getattr(denoiser, "sigma_min", 0.0) or 0.0)
    s_max = float(getattr(denoiser, "sigma_max", math.inf) or math.inf)
    g_lo = -2.0 * math.log(s_max) if math.isfinite(s_max) and s_max > 0 else -math.inf
    g_hi = -2.0 * math.log(s_min) if s_min > 0 else math.inf
    return g_lo, g_hi


def data_spectrum(samples: torch.Tensor, *, floor: float = 1e-6) -> torch.Tensor:
    """Eigenvalues (d,) of the sample covariance of ``samples`` (N, *event), floored at ``floor``.

    Pixels that never change (the borders of the digits) have zero variance; the floor keeps ``log lam`` finite.
    A sensible floor for quantised data is the dequantisation variance ``bin^2 / 12``. Needs N > d for a full
    spectrum; with fewer samples the missing eigenvalues sit at the floor.
    """
    if samples.ndim < 2 or samples.shape[0] < 2:
        raise ShapeError(f"data_spectrum needs a batch (N >= 2, ...), got shape {tuple(samples.shape)}")
    flat = samples.reshape(samples.shape[0], -1).to(torch.float64)  # (N, d)
    cov = torch.cov(flat.T).reshape(flat.shape[1], flat.shape[1])  # (d, d)
    return torch.linalg.eigvalsh(cov).clamp_min(floor)


@dataclass(frozen=True)
class LogSNRProposal:
    """A logistic(loc, scale) distribution over log-SNR, truncated to ``[gamma_min, gamma_max]``."""

    loc: float
    scale: float
    gamma_min: float
    gamma_max: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.loc) and math.isfinite(self.scale) and self.scale > 0):
            raise DiffsightError(f"log-SNR proposal needs a finite loc and scale > 0, got {self.loc}, {self.scale}")
        if not (math.isfinite(self.gamma_min) and math.isfinite(self.gamma_max) and self.gamma_min < self.gamma_max):
            raise DiffsightError(
                f"log-SNR window [{self.gamma_min}, {self.gamma_max}] is empty or infinite; widen clip or check "
                "that loc/scale overlap the denoiser's range [-2 log sigma_max, -2 log sigma_min]"
            )

    @classmethod
    def window(
        cls,
        loc: float,
        scale: float,
        clip: float = 4.0,
        limits: tuple[float, float] = (-math.inf, math.inf),
    ) -> LogSNRProposal:
        """``u = (gamma - loc) / scale`` in ``[-clip, clip]`` (ITD), intersected with ``limits`` (e.g. the
        denoiser's trained range, :func:`denoiser_logsnr_range`)."""
        if not clip > 0:
            raise DiffsightError(f"clip must be > 0, got {clip}")
        lo = max(loc - clip * scale, limits[0])
        hi = min(loc + clip * scale, limits[1])
        return cls(float(loc), float(scale), float(lo), float(hi))

    @classmethod
    def from_spectrum(
        cls, eigvals: torch.Tensor, clip: float = 4.0, limits: tuple[float, float] = (-math.inf, math.inf)
    ) -> LogSNRProposal:
        """ITD's proposal from the data covariance eigenvalues (see the module docstring)."""
        lam = torch.as_tensor(eigvals, dtype=torch.float64).reshape(-1)
        if lam.numel() == 0 or bool((lam <= 0).any()):
            raise DiffsightError("eigenvalues must be > 0; floor them first (data_spectrum(..., floor=...))")
        log_lam = lam.log()
        var = float(log_lam.var()) if lam.numel() > 1 else 0.0
        return cls.window(-float(log_lam.mean()), math.sqrt(1.0 + 3.0 / math.pi**2 * var), clip, limits)

    def _u_bounds(self) -> tuple[float, float]:
        return (self.gamma_min - self.loc) / self.scale, (self.gamma_max - self.loc) / self.scale

    def mass(self) -> float:
        """Probability mass of the untruncated logistic inside the window."""
        u_lo, u_hi = self._u_bounds()
        return 1.0 / (1.0 + math.exp(-u_hi)) - 1.0 / (1.0 + math.exp(-u_lo))

    def density(self, gammas: torch.Tensor) -> torch.Tensor:
        """q(gamma) inside the window (zero outside)."""
        u = (gammas - self.loc) / self.scale
        q = torch.sigmoid(u) * torch.sigmoid(-u) / (self.scale * self.mass())
        return torch.where((gammas >= self.gamma_min) & (gammas <= self.gamma_max), q, torch.zeros_like(q))

    def sample(
        self,
        shape: tuple[int, ...],
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(gammas, weights)``, both shaped ``shape``: iid draws by the inverse CDF and ``w = 1 / q``."""
        u_lo, u_hi = self._u_bounds()
        p_lo, p_hi = 1.0 / (1.0 + math.exp(-u_lo)), 1.0 / (1.0 + math.exp(-u_hi))
        p = p_lo + (p_hi - p_lo) * torch.rand(shape, generator=generator, device=device, dtype=dtype)
        gammas = (self.loc + self.scale * torch.logit(p)).clamp(self.gamma_min, self.gamma_max)
        u = (gammas - self.loc) / self.scale
        weights = self.scale * (p_hi - p_lo) / (torch.sigmoid(u) * torch.sigmoid(-u))
        return gammas, weights
