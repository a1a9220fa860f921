"""How unusual is an input, and where? Bits/dim, per-pixel surprise and information maps for a loaded model.

``score_inputs(model, x)`` runs the information-theoretic estimator (``diffsight.sampling.info_likelihood``,
Kong et al. 2023) on images the user hands in: the NLL with its standard error, converted to bits/dim (the
discrete bits/dim of the data's grey levels after uniform dequantisation, Theis et al. 2016, when the levels
are known; the continuous bits/dim otherwise), a per-pixel surprise map in bits that sums to the image's total,
the curve of denoising error against log-SNR, and, for a class-conditional model with labels, the pointwise
mutual information between each image and its class with its per-pixel map (Kong et al. 2024), with the same
noise shared by both conditions.

``LikelihoodMaps(trace, model)`` is the explainer the report uses: the same numbers for the sample a Trace
produced.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from diffsight.errors import DiffsightError
from diffsight.explain.explanation import Explanation
from diffsight.metrics.model_eval import training_data_of
from diffsight.models.folder import LoadedModel
from diffsight.sampling.dequantize import bits_per_dim, uniform_dequantize
from diffsight.sampling.info_likelihood import info_nll, pointwise_information
from diffsight.sampling.logsnr_sampling import LogSNRProposal, data_spectrum, denoiser_logsnr_range
from diffsight.trace.record import Trace

__all__ = ["LikelihoodMaps", "ScoreResult", "data_levels", "score_inputs"]


def data_levels(model: LoadedModel) -> int | None:
    """Grey levels of the model's training data: 17 for scikit-learn's digits (0..16), 256 for image folders
    (8-bit files), None for continuous data (procedural shapes, toy 2-D data, arrays)."""
    data = model.info.get("data") or {}
    name = str(data.get("name", ""))
    if name == "digits":
        return 17
    origin = str((data.get("source") or {}).get("origin", ""))
    if "image_folder" in origin or "folder" in origin:
        return 256
    return None


@dataclass(frozen=True, eq=False)
class ScoreResult:
    """Per-input likelihood numbers (B inputs); maps are (B, H, W) for images, (B, D) for vectors."""

    nll: torch.Tensor  # (B,) nats, continuous density of the (dequantised) input
    nll_stderr: torch.Tensor  # (B,)
    bits_per_dim: torch.Tensor  # (B,)
    bits_per_dim_stderr: torch.Tensor  # (B,)
    surprise: torch.Tensor  # (B, H, W) bits per pixel, summing to bits_per_dim * dims
    gammas: torch.Tensor  # (B, P) each image's log-SNR draws, ascending
    error_curve: torch.Tensor  # (B, P) denoising error at those log-SNRs
    levels: int | None
    nfe_per_image: int
    seconds: float
    pmi: torch.Tensor | None = None  # (B,) nats: information the class adds about the image
    pmi_stderr: torch.Tensor | None = None
    pmi_map: torch.Tensor | None = None  # (B, H, W) nats per pixel, summing to pmi


_PRIORS: dict[tuple[str, str, int | None], tuple[torch.Tensor, torch.Tensor]] = {}  # a cache: data is reloaded


def _data_prior(model: LoadedModel, levels: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(covariance eigenvalues, per-coordinate variances) of the model's training data, floored at the
    dequantisation variance bin^2 / 12 (or 1e-4 for continuous data); computed once per model and levels."""
    key = (str(model.path), str((model.info.get("data") or {}).get("fingerprint")), levels)
    if key not in _PRIORS:
        _PRIORS[key] = _compute_prior(model, levels)
    return _PRIORS[key]


def _compute_prior(model: LoadedModel, levels: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    samples = training_data_of(model).samples
    floor = (2.0 / (levels - 1)) ** 2 / 12 if levels is not None else 1e-4
    if samples[0].numel() > 4096:
        samples = samples[:, :, ::2, ::2] if samples.ndim == 4 else samples
    return data_spectrum(samples, floor=floor), samples.var(0).clamp_min(floor)


def _proposal_and_reference(model: LoadedModel, levels: int | None) -> tuple[LogSNRProposal, torch.Tensor | None]:
    """ITD's proposal from the training data's spectrum within the model's trained range (xai.md, section 3), and
    the data's pixel variances as the Gaussian reference; N(0, I) and the default window without training data."""
    limits = denoiser_logsnr_range(model.denoiser)
    if levels is not None:
        # Quantised data: stop where the noise is as large as the dequantisation noise (std delta / sqrt(12)).
        # Below it, a model trained on the lattice snaps to grid points and the integrand measures the lattice,
        # not the image (its variance explodes); the reference Gaussian stands in beyond the window.
        delta = 2.0 / (levels - 1)
        limits = (limits[0], min(limits[1], -2.0 * math.log(delta / math.sqrt(12.0))))
    try:
        eigvals, variances = _data_prior(model, levels)
    except DiffsightError:  # a model folder without a reloadable dataset: the estimator's defaults
        return LogSNRProposal.window(0.0, 1.0, 4.0, limits), None
    reference = variances if tuple(variances.shape) == tuple(model.event_shape) else None
    return LogSNRProposal.from_spectrum(eigvals, clip=4.0, limits=limits), reference


def _per_pixel(maps: torch.Tensor, event: tuple[int, ...]) -> torch.Tensor:
    return maps.sum(1) if len(event) == 3 else maps  # (B, C, H, W) -> (B, H, W); vectors stay (B, D)


def score_inputs(
    model: LoadedModel,
    x: torch.Tensor,
    *,
    labels: torch.Tensor | None = None,
    points: int = 64,
    seed: int = 0,
    levels: int | None = -1,
    dequantize: bool = True,
    batch_size: int = 512,
) -> ScoreResult:
    """Bits/dim with its standard error, surprise maps and (with ``labels``) information maps for ``x``.

    Args:
        x: inputs shaped like the model's samples, in [-1, 1].
        labels: the class of each input (conditional models): adds the pointwise mutual information.
        points: log-SNR points per image (importance-sampled); the standard error shrinks as 1/sqrt(points).
        levels: grey levels of the data (-1: from the model's training data, :func:`data_levels`); None:
            continuous bits/dim.
        dequantize: add uniform noise inside each grey level before scoring (off when the caller did).
    """
    if tuple(x.shape[1:]) != tuple(model.event_shape):
        raise DiffsightError(
            f"inputs must have shape (B, {', '.join(map(str, model.event_shape))}), got {tuple(x.shape)}"
        )
    if levels == -1:
        levels = data_levels(model)
    dims = math.prod(model.event_shape)
    generator = torch.Generator().manual_seed(seed)
    x = x.detach().to(torch.float32)
    if dequantize and levels is not None:
        x = uniform_dequantize(x, levels=levels, generator=generator)
    cond = None
    if model.num_classes > 0:
        cond = torch.full((len(x),), int(model.null_class), dtype=torch.long)  # p(x): the unconditional model
    proposal, reference = _proposal_and_reference(model, levels)
    start = time.perf_counter()
    with torch.no_grad():
        result = info_nll(
            model.denoiser,
            x,
            cond=cond,
            points=points,
            generator=generator,
            proposal=proposal,
            reference=reference,
            batch_size=batch_size,
        )
    nats_to_bits = 1.0 / math.log(2.0)
    bpd = bits_per_dim(result.nll, dims, levels=levels) if levels is not None else result.nll * nats_to_bits / dims
    offset_per_dim = float(bpd.mean() - result.nll.mean() * nats_to_bits / dims)  # the dequantisation term
    surprise = _per_pixel(result.pixel_nll, tuple(model.event_shape)) * nats_to_bits
    channels = model.event_shape[0] if len(model.event_shape) == 3 else 1
    surprise = surprise + offset_per_dim * channels  # per pixel: its channels' share of the offset
    nfe = int(result.nfe)
    pmi = pmi_se = pmi_map = None
    if labels is not None:
        if model.num_classes == 0:
            raise DiffsightError(f"{model.name} is unconditional: it has no class to measure information about")
        with torch.no_grad():
            info = pointwise_information(
                model.denoiser,
                x,
                torch.as_tensor(labels).long().reshape(-1),
                int(model.null_class),
                points=points,
                generator=torch.Generator().manual_seed(seed + 1),
                proposal=proposal,
                batch_size=batch_size,
            )
        pmi, pmi_se = info.pmi, info.stderr
        pmi_map = _per_pixel(info.pixel_pmi, tuple(model.event_shape))
        nfe += int(info.nfe)
    order = result.gammas.argsort(dim=1)  # (B, P): each image's own log-SNR draws, sorted for its curve
    return ScoreResult(
        nll=result.nll,
        nll_stderr=result.stderr,
        bits_per_dim=bpd,
        bits_per_dim_stderr=result.stderr * nats_to_bits / dims,
        surprise=surprise,
        gammas=result.gammas.gather(1, order),
        error_curve=result.mmse.gather(1, order),
        levels=levels,
        nfe_per_image=nfe,
        seconds=time.perf_counter() - start,
        pmi=pmi,
        pmi_stderr=pmi_se,
        pmi_map=pmi_map,
    )


class LikelihoodMaps:
    """Surprise (and, for a conditional trace, information) maps of a Trace's final sample."""

    method = "likelihood"

    def __init__(self, trace: Trace, model: LoadedModel, *, sample: int = 0, points: int = 64, seed: int = 0) -> None:
        if not 0 <= sample < trace.batch_size:
            raise DiffsightError(f"sample must lie in 0..{trace.batch_size - 1}, got {sample}")
        self.trace, self.model, self.sample, self.points, self.seed = trace, model, sample, points, seed

    def explain(self) -> Explanation:
        t = self.trace
        labels = t.labels[self.sample : self.sample + 1] if t.labels is not None else None
        if labels is not None and int(labels[0]) == t.meta.get("null_class"):
            labels = None
        # a generated sample is continuous: no dequantisation, continuous bits/dim
        r = score_inputs(
            self.model,
            t.final[self.sample : self.sample + 1],
            labels=labels,
            points=self.points,
            seed=self.seed,
            levels=None,
        )
        bpd, se = float(r.bits_per_dim[0]), float(r.bits_per_dim_stderr[0])
        flat = r.surprise[0].flatten()
        top = int(flat.argmax())
        where = divmod(top, r.surprise.shape[-1]) if r.surprise.ndim == 3 else (top,)
        summary = f"{bpd:.3f} +- {se:.3f} bits/dim (continuous); the most surprising pixel is {where}"
        values = {
            "surprise": r.surprise[0],
            "gammas": r.gammas,
            "error_curve": r.error_curve[0],
            "bits_per_dim": bpd,
            "bits_per_dim_stderr": se,
        }
        if r.pmi is not None and r.pmi_map is not None:
            values.update({"pmi": float(r.pmi[0]), "pmi_stderr": float(r.pmi_stderr[0]), "pmi_map": r.pmi_map[0]})
            summary += f"; the class carries {float(r.pmi[0]):.2f} +- {float(r.pmi_stderr[0]):.2f} nats about it"
        return Explanation(
            method=self.method,
            values=values,
            params={"sample": self.sample, "points": self.points, "seed": self.seed},
            diagnostics={"nfe": r.nfe_per_image, "seconds": round(r.seconds, 3), "estimator": "information-theoretic"},
            summary=summary,
            trace_id=t.id,
        )
