"""Explain one run end to end: every explainer that applies to the Trace, and the narrative they imply.

``explain_trace(trace, model)`` runs the filmstrip, the spectrum (images), the factor probes and commitment by
branching (with the shipped factor probes when the model's training data has them, a pixel distance otherwise),
the guidance map (class-conditional traces), the likelihood maps of the final sample (bits/dim, per-pixel
surprise, and the class's pointwise information for conditional traces) and an integrated-gradients
attribution of the factor decided last (the finest detail) at the step where it was decided.
``explain_run`` records the Trace first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from diffsight.explain.attribution import GradientAttribution, ProbeTarget
from diffsight.explain.commitment import Commitment
from diffsight.explain.explanation import Explanation
from diffsight.explain.factors import reader_for_model
from diffsight.explain.filmstrip import Filmstrip
from diffsight.explain.guidance import GuidanceMap
from diffsight.explain.likelihood import LikelihoodMaps
from diffsight.explain.narrative import decided_order, narrate
from diffsight.explain.probes import ProbeCurves
from diffsight.explain.spectral import SpectralEmergence
from diffsight.models.folder import LoadedModel
from diffsight.trace.record import Trace
from diffsight.trace.run import record_trace

__all__ = ["ExplainedRun", "explain_run", "explain_trace"]


@dataclass(frozen=True, eq=False)
class ExplainedRun:
    """A Trace, its explanations by method name, the narrative, and the seconds each explainer took."""

    trace: Trace
    explanations: dict[str, Explanation]
    narrative: list[str]
    seconds: dict[str, float] = field(default_factory=dict)


def explain_trace(
    trace: Trace,
    model: LoadedModel,
    *,
    sample: int = 0,
    k: int = 16,
    branch_steps: int | None = None,
    attribution: bool = True,
    likelihood: bool = True,
    seed: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> ExplainedRun:
    """Run every explainer that applies to ``trace`` (recorded with ``model``) for batch element ``sample``.

    ``seed`` seeds the branching continuations (default: the trace's own seed, so explaining a saved trace
    again gives the same numbers).
    """
    if model.is_latent:  # through the decoder, maps upsampled to image size (explain/latent.py)
        from diffsight.explain.latent import explain_latent_trace

        return explain_latent_trace(
            trace,
            model,
            sample=sample,
            k=k,
            branch_steps=branch_steps,
            attribution=attribution,
            seed=seed,
            progress=progress,
        )
    seed = int(trace.meta.get("seed", 0)) if seed is None else seed
    say = progress or (lambda _line: None)
    reader = reader_for_model(model)
    found: dict[str, Explanation] = {}
    seconds: dict[str, float] = {}

    def run(name: str, make: Callable[[], Any]) -> None:
        say(f"{name} ...")
        start = time.perf_counter()
        found[name] = make().explain()
        seconds[name] = round(time.perf_counter() - start, 3)

    run("filmstrip", lambda: Filmstrip(trace, sample=sample))
    if trace.is_image:
        bins = min(trace.event_shape[-2:]) // 2  # radial frequency bins above DC
        run("spectral", lambda: SpectralEmergence(trace, sample=sample, bands=max(2, min(4, bins // 2))))
    if reader is not None:
        run("probes", lambda: ProbeCurves(trace, reader, sample=sample))
    run(
        "commitment",
        lambda: Commitment(trace, model.denoiser, reader=reader, steps=branch_steps, k=k, seed=seed, sample=sample),
    )
    if trace.labels is not None and trace.meta.get("null_class") is not None:
        run("guidance", lambda: GuidanceMap(trace, model.denoiser, sample=sample))
    if likelihood and trace.is_image:
        run("likelihood", lambda: LikelihoodMaps(trace, model, sample=sample, seed=seed))
    if attribution and trace.is_image and reader is not None:
        order = decided_order(found["commitment"])
        # the factor decided last (the finest detail, e.g. shape), at the step where it was decided
        factor, step = (order[-1][0], order[-1][1]) if order else (next(iter(reader.factors)), trace.step_index[0])
        value = found["commitment"].values["final_value"][factor]
        classifier = reader.classifier
        run(
            "attribution",
            lambda: GradientAttribution(
                trace,
                model.denoiser,
                step=step,
                target=ProbeTarget(classifier, factor, value),
                method="integrated_gradients",
                baseline="blur",  # nearer x than zeros: completeness within 1e-4 where zeros can miss by 10%
                n_steps=64,
                sample=sample,
            ),
        )
    return ExplainedRun(trace, found, narrate(found, num_steps=trace.num_steps), seconds)


def explain_run(
    model: LoadedModel,
    *,
    seed: int,
    label: int | None = None,
    steps: int = 20,
    sampler: str = "dpmpp_2m",
    guidance: float = 1.0,
    k: int = 16,
    branch_steps: int | None = None,
    attribution: bool = True,
    likelihood: bool = True,
    progress: Callable[[str], None] | None = None,
) -> ExplainedRun:
    """Record one sample of ``model`` (seed, class, sampler, steps, guidance) and explain it."""
    say = progress or (lambda _line: None)
    say(f"sampling {model.name} (seed {seed}, {sampler}, {steps} steps)")
    with torch.no_grad():
        trace = record_trace(model, seed=seed, steps=steps, sampler=sampler, labels=label, guidance=guidance)
    return explain_trace(
        trace, model, k=k, branch_steps=branch_steps, attribution=attribution, likelihood=likelihood, progress=say
    )
