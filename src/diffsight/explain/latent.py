"""Explaining latent diffusion runs: every explainer reads the decoded images; maps come back at image size.

A latent model (:class:`~diffsight.models.latent.LatentModel`) samples in the latent space of an autoencoder; what
a person looks at is the decoded image. So, for a Trace recorded with one (it holds the latents *and* the decoded
x0_hat of every recorded step, :mod:`diffsight.trace.latent`):

- **trace-only explainers** (filmstrip, spectrum, probes) run unchanged on :func:`~diffsight.trace.latent.
  decoded_view`, the image-space Trace: x0_hat, the final sample and the change maps are decoded images;
- **commitment** branches from the recorded *latent* states with the latent denoiser and decodes every
  continuation's final before reading factors or measuring the pixel distance (``Commitment(decode=...)``);
- **attribution** attributes ``target(decode(D(z, sigma_s)))`` to the latent state z_s (:class:`DecodedTarget`:
  the probe reads the decoded estimate, gradients flow back through the decoder);
- **guidance** differences are those of the latent estimates;
- maps computed on the latent grid (attribution, guidance) are brought to image size by
  :func:`upsample_map`: **nearest, per latent cell** (each latent cell covers an f x f block of pixels, f the
  autoencoder's downsampling factor). Additive maps (attributions: their sum is the completeness total) spread a
  cell's value evenly over its block, ``preserve="sum"``, so the image map sums to the latent map exactly;
  intensive maps (an L2 norm per location, as the guidance map) repeat the cell's value, ``preserve="mean"``, so
  the mean (and the maximum) is kept exactly. Bilinear interpolation would invent structure inside a cell that
  the latent grid cannot resolve. The latent-grid map stays in ``values["latent_map"]``.

The likelihood explainer is not run for latent models: its bits/dim would be those of the latents, not of the
image (the decoder's Jacobian is not accounted for).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch

from diffsight.errors import DiffsightError, ShapeError
from diffsight.explain.attribution import GradientAttribution, ProbeTarget, Target
from diffsight.explain.commitment import Commitment
from diffsight.explain.explanation import Explanation
from diffsight.explain.factors import ClassifierReader
from diffsight.explain.filmstrip import Filmstrip
from diffsight.explain.guidance import GuidanceMap
from diffsight.explain.narrative import decided_order, narrate
from diffsight.explain.probes import ProbeCurves
from diffsight.explain.spectral import SpectralEmergence
from diffsight.metrics.classifier_io import shipped_classifier, shipped_names
from diffsight.models.folder import LoadedModel
from diffsight.models.latent import LatentModel
from diffsight.trace.latent import decoded_view, is_latent_trace
from diffsight.trace.record import Trace

if TYPE_CHECKING:
    from diffsight.explain.run import ExplainedRun

__all__ = ["UPSAMPLING", "DecodedTarget", "explain_latent_trace", "latent_reader", "upsample_map", "upsample_maps"]

UPSAMPLING = "nearest per latent cell"


def upsample_map(values: torch.Tensor, size: tuple[int, int], *, preserve: str) -> torch.Tensor:
    """A map on the latent grid (..., h, w) -> (..., H, W), nearest per latent cell (see the module docstring).

    ``preserve="sum"``: each cell's value divided by the f_h x f_w pixels of its block (sums are kept exactly);
    ``preserve="mean"``: each cell's value repeated (means and maxima are kept exactly).
    """
    if preserve not in ("sum", "mean"):
        raise DiffsightError(f"preserve must be 'sum' (additive maps) or 'mean' (intensive maps), got {preserve!r}")
    if values.ndim < 2:
        raise ShapeError(f"a map needs at least two dimensions (h, w), got shape {tuple(values.shape)}")
    h, w = values.shape[-2:]
    big_h, big_w = int(size[0]), int(size[1])
    if big_h % h or big_w % w:
        raise ShapeError(f"image size {big_h}x{big_w} is not a whole multiple of the latent grid {h}x{w}")
    fh, fw = big_h // h, big_w // w
    out = values.repeat_interleave(fh, dim=-2).repeat_interleave(fw, dim=-1)  # (..., H, W)
    return out / (fh * fw) if preserve == "sum" else out


def upsample_maps(explanation: Explanation, size: tuple[int, int], *, preserve: str, key: str = "map") -> Explanation:
    """The explanation with ``values[key]`` upsampled to ``size`` and the latent-grid map kept as ``latent_map``."""
    latent = explanation.values[key]
    values = {**explanation.values, key: upsample_map(latent, size, preserve=preserve), "latent_map": latent}
    diagnostics = {**explanation.diagnostics, "upsampling": f"{UPSAMPLING}, {preserve}-preserving"}
    h, w = latent.shape[-2:]
    summary = f"{explanation.summary} [on the {h}x{w} latent grid; map upsampled to {size[0]}x{size[1]}]"
    return replace(explanation, values=values, diagnostics=diagnostics, summary=summary)


class DecodedTarget:
    """``target(decode(out))``: a target of images evaluated on a latent output (differentiable)."""

    def __init__(self, target: Target | Callable[[torch.Tensor], torch.Tensor], decode: Callable[..., Any]) -> None:
        self.target = target
        self.decode = decode
        self.name = f"{getattr(target, 'name', 'target')} of the decoded image"

    def __call__(self, out: torch.Tensor) -> torch.Tensor:
        return self.target(self.decode(out))


def latent_reader(model: LoadedModel) -> ClassifierReader | None:
    """The shipped factor classifier of the images a latent model was trained on, or None (cf.
    :func:`~diffsight.explain.factors.reader_for_model`, which compares with the latent event shape)."""
    data = model.info.get("data") or {}
    name = data.get("name") if isinstance(data, dict) else None
    if not name or name not in shipped_names():
        return None
    classifier = shipped_classifier(str(name))
    shape = model.image_shape if isinstance(model, LatentModel) else model.event_shape
    if tuple(classifier.input_shape) != tuple(shape):
        return None
    return ClassifierReader(classifier, name=f"classifier:{name}")


def explain_latent_trace(
    trace: Trace,
    model: LoadedModel,
    *,
    sample: int = 0,
    k: int = 16,
    branch_steps: int | None = None,
    attribution: bool = True,
    seed: int | None = None,
    reader: ClassifierReader | None = None,
    progress: Callable[[str], None] | None = None,
) -> ExplainedRun:
    """:func:`~diffsight.explain.run.explain_trace` for a latent model.

    ``reader`` reads factors of decoded images (default: :func:`latent_reader`).
    """
    from diffsight.explain.run import ExplainedRun

    if not isinstance(model, LatentModel):
        raise DiffsightError(f"{model.name} is not a latent model: use explain_trace")
    if not is_latent_trace(trace):
        raise DiffsightError(f"trace {trace.id} was not recorded with a latent model: record it with {model.name}")
    seed = int(trace.meta.get("seed", 0)) if seed is None else seed
    say = progress or (lambda _line: None)
    reader = reader if reader is not None else latent_reader(model)
    image = decoded_view(trace, model)
    size = tuple(model.image_shape[-2:])
    decode = model.decode
    found: dict[str, Explanation] = {}
    seconds: dict[str, float] = {}

    def run(name: str, make: Callable[[], Any], after: Callable[[Explanation], Explanation] = lambda e: e) -> None:
        say(f"{name} ...")
        start = time.perf_counter()
        found[name] = after(make().explain())
        seconds[name] = round(time.perf_counter() - start, 3)

    run("filmstrip", lambda: Filmstrip(image, sample=sample))
    bins = min(size) // 2
    run("spectral", lambda: SpectralEmergence(image, sample=sample, bands=max(2, min(4, bins // 2))))
    if reader is not None:
        run("probes", lambda: ProbeCurves(image, reader, sample=sample))
    run(
        "commitment",
        lambda: Commitment(
            trace, model.denoiser, reader=reader, steps=branch_steps, k=k, seed=seed, sample=sample, decode=decode
        ),
    )
    if trace.labels is not None and trace.meta.get("null_class") is not None:
        run(
            "guidance",
            lambda: GuidanceMap(trace, model.denoiser, sample=sample),
            lambda e: upsample_maps(e, size, preserve="mean"),
        )
    if attribution and reader is not None:
        order = decided_order(found["commitment"])
        factor, step = (order[-1][0], order[-1][1]) if order else (next(iter(reader.factors)), trace.step_index[0])
        value = found["commitment"].values["final_value"][factor]
        target = DecodedTarget(ProbeTarget(reader.classifier, factor, value), decode)
        run(
            "attribution",
            lambda: GradientAttribution(
                trace,
                model.denoiser,
                step=step,
                target=target,
                method="integrated_gradients",
                baseline="blur",
                n_steps=32,
                sample=sample,
            ),
            lambda e: upsample_maps(e, size, preserve="sum"),
        )
    return ExplainedRun(trace, found, narrate(found, num_steps=trace.num_steps), seconds)
