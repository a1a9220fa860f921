"""Spectral emergence: when each band of spatial frequencies of x0_hat appears during sampling.

Dieleman (2024, "Diffusion is spectral autoregression", xai.md section 8c) measures the radially averaged power
spectral density (RAPSD) of the denoiser's estimate x0_hat at every step. Natural images have ``S(f) ~ f^-2``
while the noise is white (``sigma^2`` at every frequency), so at noise level sigma the frequencies with
``S(f) < sigma^2`` are drowned and, as sigma falls, frequencies appear from low to high: coarse to fine. For a
stationary Gaussian field the optimal denoiser is the per-frequency Wiener filter
``x0_hat(f) = S(f) / (S(f) + sigma^2) x(f)``, the expected power of x0_hat at f is ``S^2 / (S + sigma^2)``, and
f is half revealed exactly when ``SNR * S(f) = S(f) / sigma^2 = 1`` (xai.md section 17, check 4).

Falck et al. (2025, "A Fourier Space Perspective on Diffusion Models") show that this order is approximate and
can be broken by design, so the explainer reports coarse-to-fine as a *measurement*: it finds the step at which
each frequency band of x0_hat first reaches half of the power it has in the final sample, and says whether these
emergence steps run from the lowest band to the highest, or names the first pair of bands that does not.

Normalisation: :func:`radial_power_spectrum` uses the orthonormal 2-D DFT (``norm="ortho"``), so by Parseval
the mean of ``|X(k)|^2`` over all 2-D frequencies equals the mean squared pixel; white noise of variance
``sigma^2`` has power ``sigma^2`` at every frequency, and a stationary field whose covariance has eigenvalues
``S(k)`` in the DFT basis has expected power ``S(k)``. Power is averaged over channels and, within a radial
bin, over the 2-D frequencies of that bin.
"""

from __future__ import annotations

import math

import torch

from diffsight.errors import DiffsightError, ShapeError
from diffsight.explain.explanation import Explanation
from diffsight.trace.record import Trace

__all__ = ["SpectralEmergence", "emergence_row", "frequency_bands", "radial_power_spectrum"]

HALF = 0.5
"""A band has emerged once x0_hat holds this fraction of the band's final power."""


def _radial_bins(height: int, width: int) -> tuple[torch.Tensor, int, int]:
    """Integer radial bin of every pixel of the centred (fftshifted) 2-D spectrum.

    Returns ``(bin (H, W) long, size, num_bins)``: bin ``r`` holds the frequencies with
    ``round(|f| * size) == r``, ``size = max(H, W)``, so ``r`` counts pixels from the centre of a square
    spectrum and bin r has frequency ``r / size`` cycles per pixel. Bins 1 .. size // 2 are kept (DC and the
    corners beyond the Nyquist radius 0.5 are left out).
    """
    size = max(height, width)
    fy = torch.fft.fftshift(torch.fft.fftfreq(height, dtype=torch.float64))  # (H,) cycles per pixel
    fx = torch.fft.fftshift(torch.fft.fftfreq(width, dtype=torch.float64))  # (W,)
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)  # (H, W)
    return torch.round(radius * size).long(), size, size // 2


def radial_power_spectrum(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Radially averaged power spectral density (RAPSD) of a batch of images.

    Args:
        images: (N, C, H, W), real.

    Returns:
        ``(frequency, power)``: ``frequency`` (F,) float64 in cycles per pixel, ``r / max(H, W)`` for the
        integer radial bins ``r = 1 .. max(H, W) // 2`` of the centred 2-D FFT (DC excluded, corners beyond
        0.5 cycles per pixel excluded); ``power`` (N, F) float64, the channel-averaged ``|FFT_ortho(x)|^2``
        averaged over the 2-D frequencies of each bin (white noise of variance s^2 gives s^2 in every bin).
    """
    if images.ndim != 4:
        raise ShapeError(f"radial_power_spectrum needs images shaped (N, C, H, W), got {tuple(images.shape)}")
    n, _, height, width = images.shape
    bins, size, num_bins = _radial_bins(height, width)
    if num_bins < 1:
        raise ShapeError(f"images of {height}x{width} pixels have no frequency above DC; use at least 2x2 pixels")
    spectrum = torch.fft.fftshift(torch.fft.fft2(images.detach().to(torch.float64), norm="ortho"), dim=(-2, -1))
    power2d = spectrum.abs().pow(2).mean(1).reshape(n, height * width)  # (N, C, H, W) -> (N, H*W)
    flat_bins = bins.reshape(-1)  # (H*W,)
    keep = (flat_bins >= 1) & (flat_bins <= num_bins)
    index = flat_bins[keep] - 1  # (K,) bin of each kept 2-D frequency, 0-based
    total = torch.zeros(n, num_bins, dtype=torch.float64).index_add_(1, index, power2d[:, keep])  # (N, F)
    count = torch.zeros(num_bins, dtype=torch.float64).index_add_(0, index, torch.ones_like(index, dtype=torch.float64))
    frequency = torch.arange(1, num_bins + 1, dtype=torch.float64) / size
    return frequency, total / count


def frequency_bands(frequency: torch.Tensor, bands: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``bands`` log-spaced bands over the (non-DC, ascending) frequencies.

    Returns ``(edges (bands+1,) float64, band (F,) long)``: edges run geometrically from ``frequency[0]`` to
    ``frequency[-1]``; band b holds ``edges[b] <= f < edges[b+1]`` (the last band also its upper edge; a
    frequency on an edge, to rounding, goes to the upper band). Raises when a band would hold no frequency.
    """
    if not isinstance(bands, int) or isinstance(bands, bool) or bands < 1:
        raise DiffsightError(f"bands must be a positive integer, got {bands!r}")
    f = frequency.to(torch.float64)
    lo, hi = float(f[0]), float(f[-1])
    if lo <= 0:
        raise DiffsightError("frequency must exclude DC (all positive)")
    edges = torch.exp(torch.linspace(math.log(lo), math.log(hi), bands + 1, dtype=torch.float64))
    edges[0], edges[-1] = lo, hi
    if bands == 1 or hi == lo:
        band = torch.zeros(len(f), dtype=torch.long)
    else:
        position = torch.log(f / lo) / math.log(hi / lo) * bands  # (F,) in [0, bands]
        band = torch.floor(position + 1e-9).long().clamp(0, bands - 1)
    counts = torch.bincount(band, minlength=bands)
    if bool((counts == 0).any()):
        empty = [int(b) + 1 for b in torch.nonzero(counts == 0).reshape(-1)]
        raise DiffsightError(
            f"bands={bands} leaves band(s) {empty} without a frequency bin ({len(f)} radial bins from "
            f"{lo:.3g} to {hi:.3g} cycles per pixel); ask for fewer bands"
        )
    return edges, band


def emergence_row(power: torch.Tensor, final: float, threshold: float = HALF) -> int:
    """First row of ``power`` (S,) at which it reaches ``threshold * final`` (-1: never)."""
    reached = torch.nonzero(power >= threshold * final).reshape(-1)
    return int(reached[0]) if len(reached) else -1


def _emergence_sigma(power: torch.Tensor, sigma: torch.Tensor, row: int, target: float) -> float:
    """Noise level where ``power`` crosses ``target``: linear in log-sigma between row-1 and row."""
    if row < 0:
        return math.nan
    if row == 0:
        return float(sigma[0])
    p0, p1 = float(power[row - 1]), float(power[row])
    t = (target - p0) / (p1 - p0) if p1 != p0 else 1.0
    l0, l1 = math.log(float(sigma[row - 1])), math.log(float(sigma[row]))
    return math.exp(l0 + min(max(t, 0.0), 1.0) * (l1 - l0))


def _band_name(b: int, edges: torch.Tensor) -> str:
    bands = len(edges) - 1
    lo, hi = float(edges[b]), float(edges[b + 1])
    if bands == 1:
        return f"band 1 ({lo:.2g} <= f <= {hi:.2g})"
    if b == 0:
        return f"band 1 (f < {hi:.2g})"
    if b == bands - 1:
        return f"band {b + 1} (f >= {lo:.2g})"
    return f"band {b + 1} ({lo:.2g} <= f < {hi:.2g})"


class SpectralEmergence:
    """Emergence step of each log-spaced frequency band of x0_hat along an image Trace.

    Args:
        trace: a Trace of images (event shape (C, H, W)).
        sample: which sample of the batch; ``None`` averages the power spectra over every sample of the trace
            before the emergence steps are found (the ratio of averages: a batch estimate of the expected
            power, as in the Wiener-filter known answer).
        bands: number of log-spaced bands over the non-DC frequencies.

    values: ``step`` (S,) long, ``sigma`` (S,) float64, ``frequency`` (F,), ``power`` (S, F) (RAPSD of x0_hat,
    :func:`radial_power_spectrum`), ``final_power`` (F,) (RAPSD of the final sample, sigma 0), ``band_edges``
    (bands+1,), ``band_power`` (S, bands) (mean of ``power`` over the band's radial bins), ``emergence_step``
    (bands,) long (the sampler step of the first recorded row whose band power reaches half the final band
    power; -1 = never), ``emergence_sigma`` (bands,) float64 (the crossing, interpolated linearly in log-sigma
    between that row and the previous recorded one; sigma of the first row if already reached there; NaN if
    never), ``coarse_to_fine`` bool (emergence steps non-decreasing from the lowest to the highest band, a band
    that never emerges counting as after the last step).
    """

    method = "spectral"

    def __init__(self, trace: Trace, *, sample: int | None = 0, bands: int = 4) -> None:
        if not trace.is_image:
            raise DiffsightError(
                f"spectral emergence needs an image trace with event shape (C, H, W); this trace has event shape "
                f"{trace.event_shape}. Use an image model, or the filmstrip explainer for vector data"
            )
        if sample is not None and (
            not isinstance(sample, int) or isinstance(sample, bool) or not 0 <= sample < trace.batch_size
        ):
            raise DiffsightError(
                f"sample must lie in 0..{trace.batch_size - 1} (or be None to average all samples), got {sample!r}"
            )
        if not isinstance(bands, int) or isinstance(bands, bool) or bands < 1:
            raise DiffsightError(f"bands must be a positive integer, got {bands!r}")
        self.trace = trace
        self.sample = sample
        self.bands = bands

    def explain(self) -> Explanation:
        t = self.trace
        x0 = t.x0_hat.to(torch.float64)  # (S, B, C, H, W)
        final = t.final.to(torch.float64)  # (B, C, H, W)
        if self.sample is not None:
            x0 = x0[:, self.sample : self.sample + 1]  # (S, 1, C, H, W)
            final = final[self.sample : self.sample + 1]  # (1, C, H, W)
        rows, batch = x0.shape[:2]
        frequency, power = radial_power_spectrum(x0.reshape(rows * batch, *x0.shape[2:]))  # (S*B, F)
        power = power.reshape(rows, batch, -1).mean(1)  # (S, B, F) -> (S, F)
        final_power = radial_power_spectrum(final)[1].mean(0)  # (B, F) -> (F,)
        edges, band = frequency_bands(frequency, self.bands)
        onehot = torch.nn.functional.one_hot(band, self.bands).to(torch.float64)  # (F, bands)
        counts = onehot.sum(0)  # (bands,)
        band_power = power @ onehot / counts  # (S, bands)
        final_band = final_power @ onehot / counts  # (bands,)

        steps = t.tensors["step_index"].long()
        sigma = t.tensors["sigma"].to(torch.float64)
        emergence = []
        emergence_sigma = []
        for b in range(self.bands):
            row = emergence_row(band_power[:, b], float(final_band[b]))
            emergence.append(int(steps[row]) if row >= 0 else -1)
            emergence_sigma.append(_emergence_sigma(band_power[:, b], sigma, row, HALF * float(final_band[b])))
        emergence_step = torch.tensor(emergence, dtype=torch.long)
        order = [s if s >= 0 else t.num_steps for s in emergence]  # never = after the last step
        violations = [b for b in range(self.bands - 1) if order[b + 1] < order[b]]
        coarse_to_fine = not violations

        summary = self._summary(emergence, emergence_sigma, edges, violations)
        height, width = t.event_shape[1:]
        return Explanation(
            method=self.method,
            values={
                "step": steps.clone(),
                "sigma": sigma.clone(),
                "frequency": frequency,
                "power": power,
                "final_power": final_power,
                "band_edges": edges,
                "band_power": band_power,
                "emergence_step": emergence_step,
                "emergence_sigma": torch.tensor(emergence_sigma, dtype=torch.float64),
                "coarse_to_fine": coarse_to_fine,
            },
            params={"sample": self.sample, "bands": self.bands, "threshold": HALF},
            diagnostics={
                "recorded_steps": len(steps),
                "num_steps": t.num_steps,
                "stride": t.meta.get("stride", 1),
                "pixels": height * width,
                "height": height,
                "width": width,
                "samples_averaged": batch,
                "bins_per_band": [int(c) for c in counts.tolist()],
                "out_of_order_pairs": [[b + 1, b + 2] for b in violations],
            },
            summary=summary,
            trace_id=t.id,
        )

    def _summary(
        self, emergence: list[int], emergence_sigma: list[float], edges: torch.Tensor, violations: list[int]
    ) -> str:
        def when(b: int) -> str:
            if emergence[b] < 0:
                return "never reached half its final power"
            return f"at step {emergence[b]} (sigma {emergence_sigma[b]:.3g})"

        def emerged(b: int) -> str:
            return when(b) if emergence[b] < 0 else "emerged " + when(b)

        over = "" if self.sample is not None else f" (power averaged over {self.trace.batch_size} samples)"
        last = self.bands - 1
        if not violations:
            first = f"coarse-to-fine: {_band_name(0, edges)} {emerged(0)}"
            if last == 0:
                return first + over
            return f"{first}, {_band_name(last, edges)} {when(last)}" + over
        b = violations[0]
        lower = (
            f"while {_band_name(b, edges)} {when(b)}"
            if emergence[b] < 0
            else f"before {_band_name(b, edges)} {when(b)}"
        )
        more = f"; {len(violations)} of {last} adjacent band pairs out of order" if len(violations) > 1 else ""
        return f"not coarse-to-fine: {_band_name(b + 1, edges)} {emerged(b + 1)}, {lower}{more}" + over
