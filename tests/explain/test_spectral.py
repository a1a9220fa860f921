"""Spectral emergence against the Wiener filter of a stationary Gaussian field (xai.md section 17, check 4).

For a stationary field with spectrum S(f) the covariance is diagonal in the 2-D DFT basis, the Gaussian oracle
is the per-frequency Wiener filter and, along the exact probability-flow ODE, every Fourier coefficient of
x0_hat is the final one times sqrt(S / (S + sigma^2)). The expected power of x0_hat is S^2 / (S + sigma^2):
half of the final S exactly at sigma^2 = S, i.e. SNR * S(f) = 1.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import pytest
import torch

from diffsight.errors import DiffsightError, ShapeError
from diffsight.explain.spectral import SpectralEmergence, emergence_row, frequency_bands, radial_power_spectrum
from diffsight.models import load_model
from diffsight.oracles import GaussianOracle
from diffsight.sampling import karras_sigmas
from diffsight.trace import Trace, record_trace

N = 16  # 16x16 grid: radial bins r = 1..8; four log-spaced bands hold bins {1}, {2}, {3, 4}, {5, 6, 7, 8}
BANDS_16 = [[1], [2], [3, 4], [5, 6, 7, 8]]
SIGMAS = karras_sigmas(50, 0.002, 80.0)  # consecutive sigmas 20-30% apart where the bands emerge (0.15..7)


@functools.cache
def _index_radius(n: int) -> torch.Tensor:
    """(n, n) distance in DFT-index units of every frequency from DC, in unshifted FFT order."""
    k = torch.fft.fftfreq(n, dtype=torch.float64) * n
    return torch.sqrt(k[:, None] ** 2 + k[None, :] ** 2)


def _spectrum(n: int, exponent: float) -> torch.Tensor:
    """S(k) = (|k| / 1)^exponent + 1e-3 on the (n, n) DFT grid (|k| in index units; DC given S of |k| = 1)."""
    return _index_radius(n).clamp_min(1.0) ** exponent + 1e-3


def _stationary_cov(spectrum: torch.Tensor) -> torch.Tensor:
    """Sigma = F^H diag(S) F as a real (d, d) matrix, F the orthonormal 2-D DFT on an (n, n) grid."""
    n = spectrum.shape[0]
    d = n * n
    basis = torch.eye(d, dtype=torch.float64).reshape(d, n, n)
    dft = torch.fft.fft2(basis, norm="ortho").reshape(d, d)  # dft[p, k] = F[k, p]
    cov = (dft.conj() * spectrum.reshape(1, d)) @ dft.T  # sum_k conj(F[k, p]) S_k F[k, q]
    assert float(cov.imag.abs().max()) < 1e-12  # S(k) = S(-k): the covariance is real
    return cov.real.contiguous()


@functools.cache
def _field(exponent: float, n: int = N) -> tuple[GaussianOracle, torch.Tensor]:
    """The Gaussian oracle (exact Wiener filter) of the stationary field with S ~ |f|^exponent, and S (n, n)."""
    spectrum = _spectrum(n, exponent)
    return GaussianOracle(torch.zeros(1, n, n), _stationary_cov(spectrum)), spectrum


@functools.cache
def _bin_average(n: int = N) -> torch.Tensor:
    """(n // 2, n * n): row r - 1 averages an (n, n) map (unshifted FFT order) over integer radial bin r."""
    radius = torch.round(_index_radius(n)).reshape(-1)
    rows = torch.stack([(radius == r).to(torch.float64) for r in range(1, n // 2 + 1)])
    return rows / rows.sum(1, keepdim=True)


def _bin_means(values: torch.Tensor, n: int = N) -> torch.Tensor:
    """Mean of an (n, n) map (unshifted FFT order) over each integer radial bin r = 1..n//2."""
    return _bin_average(n) @ values.reshape(-1)


@functools.cache
def _band_average() -> torch.Tensor:
    """(4, N * N): the band power of a 2-D power map, the mean over the band's bins of the bin means."""
    bins = _bin_average(N)
    return torch.stack([bins[[r - 1 for r in rs]].mean(0) for rs in BANDS_16])


def _predicted_sigma(spectrum: torch.Tensor) -> list[float]:
    """Per band, the sigma at which the expected band power of x0_hat, the band average of S^2 / (S + sigma^2),
    is half its sigma = 0 value (bisection in log sigma, all bands at once)."""
    s = spectrum.reshape(-1)
    final = _band_average() @ s
    lo = torch.full((len(BANDS_16),), math.log(1e-4), dtype=torch.float64)
    hi = torch.full((len(BANDS_16),), math.log(1e4), dtype=torch.float64)
    for _ in range(60):
        mid = (lo + hi) / 2
        power = (_band_average() * s**2 / (s + mid.exp()[:, None] ** 2)).sum(1)  # (bands, d) -> (bands,)
        above = power > final / 2
        lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
    return lo.exp().tolist()


def _trace(denoiser: Callable[..., torch.Tensor], *, n: int = 64, stride: int = 1, event: int = N) -> Trace:
    return record_trace(
        denoiser, seed=0, n=n, sigmas=SIGMAS, sampler="heun", stride=stride, event_shape=(1, event, event)
    )


@pytest.fixture(scope="module")
def falling() -> tuple[Trace, torch.Tensor]:
    """64 samples of the S ~ f^-2 field (natural-image-like), heun over 50 Karras steps."""
    oracle, spectrum = _field(-2.0)
    return _trace(oracle), spectrum


# -- the helpers -------------------------------------------------------------------------------------------------


def test_radial_power_spectrum_of_a_cosine_and_of_white_noise() -> None:
    pix = torch.arange(N, dtype=torch.float64)
    wave = torch.cos(2 * math.pi * 3 * pix / N)[None, :].expand(N, N)  # 3 cycles along x
    frequency, power = radial_power_spectrum(torch.stack([wave, 2 * wave])[None])  # (1, 2, H, W)
    torch.testing.assert_close(frequency, torch.arange(1, 9, dtype=torch.float64) / N)
    count3 = int((torch.round(_index_radius(N)) == 3).sum())
    # |FFT_ortho|^2 = d / 4 at k = +-3 for the unit wave, 4x that for the second channel, channel mean 2.5 d / 4
    expected = torch.zeros(8, dtype=torch.float64)
    expected[2] = 2 * 2.5 * N * N / 4 / count3
    torch.testing.assert_close(power[0], expected)

    noise = 0.7 * torch.randn(200, 3, N, N, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    flat = radial_power_spectrum(noise)[1].mean(0)  # white noise of variance 0.49: flat 0.49
    torch.testing.assert_close(flat, torch.full((8,), 0.49, dtype=torch.float64), rtol=0.06, atol=0)
    with pytest.raises(ShapeError, match=r"\(N, C, H, W\)"):
        radial_power_spectrum(torch.zeros(3, N, N))


def test_stationary_field_has_the_spectrum_it_was_built_with() -> None:
    """Samples of N(0, F^H diag(S) F) have expected RAPSD = the bin mean of S (checks the normalisation)."""
    oracle, spectrum = _field(-2.0)
    x = oracle.sample(2000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    measured = radial_power_spectrum(x)[1].mean(0)
    # each bin averages >= 4 frequencies (2 independent up to conjugate symmetry) of 2000 samples: ~2% error
    torch.testing.assert_close(measured, _bin_means(spectrum), rtol=0.08, atol=0)


def test_frequency_bands_are_log_spaced_and_cover_every_bin() -> None:
    frequency = torch.arange(1, 9, dtype=torch.float64) / N
    edges, band = frequency_bands(frequency, 4)
    torch.testing.assert_close(edges, torch.logspace(math.log10(1 / 16), math.log10(0.5), 5, dtype=torch.float64))
    assert band.tolist() == [b for b, rs in enumerate(BANDS_16) for _ in rs]
    _, band3 = frequency_bands(frequency, 3)  # edges 1/16, 1/8, 1/4, 1/2: a bin on an edge goes to the upper band
    assert band3.tolist() == [0, 1, 1, 2, 2, 2, 2, 2]
    with pytest.raises(DiffsightError, match="fewer bands"):
        frequency_bands(frequency, 6)
    with pytest.raises(DiffsightError, match="positive integer"):
        frequency_bands(frequency, 0)
    assert emergence_row(torch.tensor([0.1, 0.4, 0.6, 0.9]), 1.0) == 2
    assert emergence_row(torch.tensor([0.1, 0.2]), 1.0) == -1


# -- known answers ------------------------------------------------------------------------------------------------


def test_wiener_field_bands_emerge_where_snr_times_s_is_one(falling: tuple[Trace, torch.Tensor]) -> None:
    """Check 4: each band's measured emergence sigma matches the closed form, and the order is coarse to fine.

    Tolerance 5% in sigma, tighter than one recorded step (20-30% apart here). Measured error (heun): < 1.2%:
    linear interpolation in log-sigma of the logistic S / (S + sigma^2) between steps, the random within-band
    weights of 64 samples (|X0(k)|^2 instead of S(k)), and the ODE solver's discretisation.
    """
    trace, spectrum = falling
    values = SpectralEmergence(trace, sample=None).explain().values
    predicted = _predicted_sigma(spectrum)
    measured = values["emergence_sigma"].tolist()
    for b, (m, p) in enumerate(zip(measured, predicted, strict=True)):
        assert m == pytest.approx(p, rel=0.05), f"band {b + 1}: measured sigma {m:.4g}, predicted {p:.4g}"
    # the step is the first recorded step with sigma at or below the crossing (one step of slack at a boundary)
    sigma, steps = values["sigma"], values["step"]
    for b, p in enumerate(predicted):
        first = int(steps[torch.nonzero(sigma <= p)[0, 0]])
        assert abs(int(values["emergence_step"][b]) - first) <= 1
    # the rule of thumb sigma^2 = S(band) with the band's mean S: within 10% (S varies inside a band)
    band_s = [float(_bin_means(spectrum)[[r - 1 for r in rs]].mean()) for rs in BANDS_16]
    for m, s in zip(measured, band_s, strict=True):
        assert m == pytest.approx(math.sqrt(s), rel=0.1)
    # low frequencies strictly before high ones, and the summary says so
    order = values["emergence_step"].tolist()
    assert order == sorted(set(order)) and values["coarse_to_fine"] is True
    explanation = SpectralEmergence(trace, sample=None).explain()
    assert explanation.summary.startswith("coarse-to-fine: band 1 (f < 0.11) emerged at step ")
    assert "band 4 (f >= 0.3) at step" in explanation.summary


def test_one_sample_of_the_field_is_also_coarse_to_fine(falling: tuple[Trace, torch.Tensor]) -> None:
    """One sample: the within-band weights are one draw, so allow 30% (band 1 mixes S = 1 and S = 1/2)."""
    trace, spectrum = falling
    values = SpectralEmergence(trace, sample=3).explain().values
    for m, p in zip(values["emergence_sigma"].tolist(), _predicted_sigma(spectrum), strict=True):
        assert m == pytest.approx(p, rel=0.3)
    assert values["coarse_to_fine"] is True


def test_rising_spectrum_is_reported_as_not_coarse_to_fine() -> None:
    """Negative control: S ~ f^+2 reveals high frequencies first (the SNR rule still predicts each band)."""
    oracle, spectrum = _field(+2.0)
    explanation = SpectralEmergence(_trace(oracle), sample=None).explain()
    values = explanation.values
    for m, p in zip(values["emergence_sigma"].tolist(), _predicted_sigma(spectrum), strict=True):
        assert m == pytest.approx(p, rel=0.05)
    order = values["emergence_step"].tolist()
    assert order == sorted(set(order), reverse=True)
    assert values["coarse_to_fine"] is False
    assert explanation.summary.startswith("not coarse-to-fine: band 2 (0.11 <= f < 0.18) emerged at step ")
    assert "before band 1 (f < 0.11)" in explanation.summary and "3 of 3 adjacent band pairs" in explanation.summary
    assert explanation.diagnostics["out_of_order_pairs"] == [[1, 2], [2, 3], [3, 4]]


class _LeakyWiener:
    """Negative control: the Wiener filter, but the noise above 0.3 cycles per pixel passes straight through."""

    sigma_min = 0.0
    sigma_max = math.inf

    def __init__(self, oracle: GaussianOracle) -> None:
        self.oracle = oracle
        self.high = _index_radius(N) / N >= 0.3  # (N, N) unshifted FFT order

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor | float, cond: object = None) -> torch.Tensor:
        clean = self.oracle(x, sigma)
        leak = torch.fft.ifft2(torch.fft.fft2(x - clean, norm="ortho") * self.high, norm="ortho").real
        return clean + leak.to(x.dtype)


def test_denoiser_leaking_high_frequency_noise_is_a_violation() -> None:
    oracle, _ = _field(-2.0)
    explanation = SpectralEmergence(_trace(_LeakyWiener(oracle)), sample=None).explain()
    steps = explanation.values["emergence_step"].tolist()
    assert steps[3] == 0 and steps[:3] == sorted(steps[:3]) and steps[2] > 0
    assert explanation.values["coarse_to_fine"] is False
    assert explanation.summary.startswith("not coarse-to-fine: band 4 (f >= 0.3) emerged at step 0 (sigma 80)")
    assert "before band 3" in explanation.summary


def test_stride_reports_the_first_recorded_step_at_or_after_the_crossing(falling: tuple[Trace, torch.Tensor]) -> None:
    trace, _ = falling
    oracle, _ = _field(-2.0)
    strided = _trace(oracle, stride=4)
    full = SpectralEmergence(trace, sample=None).explain().values["emergence_step"].tolist()
    explanation = SpectralEmergence(strided, sample=None).explain()
    recorded = strided.step_index
    for f, s in zip(full, explanation.values["emergence_step"].tolist(), strict=True):
        assert s == min(r for r in recorded if r >= f)
    assert explanation.diagnostics["stride"] == 4 and explanation.diagnostics["recorded_steps"] == len(recorded)


# -- contract ----------------------------------------------------------------------------------------------------


def test_values_shapes_and_validation(falling: tuple[Trace, torch.Tensor]) -> None:
    trace, _ = falling
    explanation = SpectralEmergence(trace, sample=5, bands=3).explain()
    v, s = explanation.values, len(trace.step_index)
    assert explanation.method == "spectral" and explanation.trace_id == trace.id
    assert v["step"].shape == (s,) and v["step"].dtype == torch.long and v["sigma"].dtype == torch.float64
    assert v["frequency"].shape == (8,) and v["power"].shape == (s, 8) and v["final_power"].shape == (8,)
    assert v["band_edges"].shape == (4,) and v["band_power"].shape == (s, 3)
    assert v["emergence_step"].shape == (3,) and v["emergence_step"].dtype == torch.long
    assert v["emergence_sigma"].shape == (3,) and v["emergence_sigma"].dtype == torch.float64
    assert isinstance(v["coarse_to_fine"], bool)
    assert explanation.diagnostics["pixels"] == N * N and explanation.diagnostics["samples_averaged"] == 1
    assert explanation.params == {"sample": 5, "bands": 3, "threshold": 0.5}
    explanation.dumps()  # JSON-ready
    for bad in (64, -1, True):
        with pytest.raises(DiffsightError, match=r"sample must lie in 0\.\.63"):
            SpectralEmergence(trace, sample=bad)  # type: ignore[arg-type]
    with pytest.raises(DiffsightError, match="bands"):
        SpectralEmergence(trace, bands=0)
    with pytest.raises(DiffsightError, match="fewer bands"):
        SpectralEmergence(trace, bands=9).explain()
    vector = record_trace(GaussianOracle(torch.zeros(4)), seed=0, n=2, sigmas=SIGMAS[-6:], event_shape=(4,))
    with pytest.raises(DiffsightError, match=r"image trace.*\(4,\)"):
        SpectralEmergence(vector)


def test_12x12_field_is_coarse_to_fine() -> None:
    """A grid whose size is not a power of two: bins 1..6, bands {1}, {2}, {3}, {4, 5, 6}."""
    oracle, _ = _field(-2.0, 12)
    values = SpectralEmergence(_trace(oracle, n=32, event=12), sample=None).explain().values
    assert values["frequency"].shape == (6,)
    assert values["coarse_to_fine"] is True and len(set(values["emergence_step"].tolist())) == 4


def test_shipped_shapes_model_smoke() -> None:
    trace = record_trace(load_model("shapes"), seed=0, n=2, steps=20)
    explanation = SpectralEmergence(trace, sample=1).explain()
    steps = explanation.values["emergence_step"].tolist()
    assert all(s == -1 or s in trace.step_index for s in steps)
    assert explanation.values["power"].shape == (20, 8)
    assert explanation.summary.startswith(("coarse-to-fine:", "not coarse-to-fine:"))
    assert "band 1" in explanation.summary
