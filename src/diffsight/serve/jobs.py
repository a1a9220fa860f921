"""The work behind each endpoint, run in a worker thread: generate (optionally streaming), explain, score.

Each function gets the request's :class:`~diffsight.serve.cancel.Job`; the model's denoiser is wrapped in
:class:`~diffsight.serve.cancel.CancellableDenoiser` and the sampler callback checks the job too, so the work
stops within one network evaluation of a cancel or a deadline. The server owns grad mode here (it is the
caller): sampling and scoring run without gradients; explaining keeps them on for the attributions.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import torch

from diffsight.errors import DiffsightError
from diffsight.explain.likelihood import score_inputs
from diffsight.explain.run import explain_trace
from diffsight.models.folder import LoadedModel
from diffsight.sampling.records import StepRecord
from diffsight.serve.cancel import CancellableDenoiser, Job
from diffsight.serve.images import decode_image
from diffsight.serve.render import explain_view, heatmap_uri, image_uri, step_payload
from diffsight.serve.schemas import ExplainRequest, GenerateRequest, ScoreRequest
from diffsight.serve.store import TraceStore
from diffsight.trace.record import Trace
from diffsight.trace.run import record_trace

__all__ = ["StepSink", "record", "run_explain", "run_generate", "run_generate_and_explain", "run_score"]

StepSink = Callable[[dict[str, Any]], None]
"""Receives each ``step`` event's data as the sampler produces it (the stream pushes it to the client)."""


def _guarded(model: LoadedModel, job: Job) -> LoadedModel:
    """The same model whose denoiser checks ``job`` before every evaluation."""
    return dataclasses.replace(model, denoiser=CancellableDenoiser(model.denoiser, job))


def record(
    model: LoadedModel, body: GenerateRequest, job: Job, *, memory_budget: int, on_step: StepSink | None = None
) -> Trace:
    """Sample and record the run of ``body``; ``on_step`` gets every step's event data as it happens."""
    previous: torch.Tensor | None = None
    nfe = 0

    def callback(step: StepRecord) -> None:
        nonlocal previous, nfe
        job.check()
        nfe += step.nfe
        if on_step is not None:
            on_step(step_payload(step, previous, body.steps, nfe))
            previous = step.x0_hat[0].detach().float().cpu()

    with torch.no_grad():
        return record_trace(
            _guarded(model, job),
            seed=body.seed,
            n=body.n,
            steps=body.steps,
            sampler=body.sampler,
            labels=body.label,
            guidance=body.guidance,
            memory_budget=memory_budget,
            callback=callback,
        )


def run_generate(
    model: LoadedModel,
    body: GenerateRequest,
    job: Job,
    store: TraceStore,
    *,
    memory_budget: int,
    on_step: StepSink | None = None,
) -> dict[str, Any]:
    """POST /v1/generate (and the ``final`` event of the stream): record, store, and draw the samples."""
    start = time.perf_counter()
    trace = record(model, body, job, memory_budget=memory_budget, on_step=on_step)
    job.check()
    trace_id = store.put(trace)
    images = [image_uri(trace.final[i]) for i in range(trace.batch_size)]
    return {
        "trace_id": trace_id,
        "model": model.name,
        "images": images,
        "image": images[0],
        "steps": trace.num_steps,
        "nfe": int(trace.meta["nfe"]),
        "seed": body.seed,
        "sampler": body.sampler,
        "label": body.label,
        "guidance": body.guidance,
        "seconds": round(time.perf_counter() - start, 4),
    }


def run_explain(model: LoadedModel, trace: Trace, body: ExplainRequest, job: Job) -> dict[str, Any]:
    """POST /v1/explain for a recorded trace: every explainer that applies, shaped for the viewer."""
    start = time.perf_counter()
    if body.sample >= trace.batch_size:
        raise DiffsightError(f"sample: trace {trace.id} holds samples 0..{trace.batch_size - 1}, got {body.sample}")
    guarded = _guarded(model, job)
    result = explain_trace(
        trace,
        guarded,
        sample=body.sample,
        k=body.k,
        branch_steps=body.branch_steps,
        attribution=body.attribution,
        progress=lambda _line: job.check(),
    )
    return explain_view(trace, result.explanations, result.narrative, body.sample, time.perf_counter() - start)


def run_generate_and_explain(
    model: LoadedModel, body: ExplainRequest, job: Job, store: TraceStore, *, memory_budget: int
) -> dict[str, Any]:
    """POST /v1/explain with generate options: record and store the run, then explain it."""
    trace = record(model, body.generate_request(), job, memory_budget=memory_budget)
    store.put(trace)
    return run_explain(model, trace, body, job)


def run_score(model: LoadedModel, body: ScoreRequest, job: Job, *, max_side: int, max_bytes: int) -> dict[str, Any]:
    """POST /v1/score: bits/dim with its standard error and a per-pixel surprise map for each image."""
    start = time.perf_counter()
    shape = tuple(model.event_shape)
    x = torch.stack(
        [
            decode_image(text, shape, where=f"images[{i}]", max_side=max_side, max_bytes=max_bytes)
            for i, text in enumerate(body.images)
        ]
    )  # (B, C, H, W)
    labels = None if body.label is None else torch.full((len(x),), body.label, dtype=torch.long)
    job.check()
    result = score_inputs(_guarded(model, job), x, labels=labels, points=body.points, seed=body.seed, levels=256)
    surprise = result.surprise.clamp_min(0)  # (B, H, W) bits per pixel
    top = float(surprise.max())
    scores = []
    for i in range(len(x)):
        row: dict[str, Any] = {
            "bits_per_dim": float(result.bits_per_dim[i]),
            "bits_per_dim_stderr": float(result.bits_per_dim_stderr[i]),
            "nll_nats": float(result.nll[i]),
            "map": heatmap_uri(surprise[i], vmax=top),
        }
        if result.pmi is not None and result.pmi_map is not None:
            row["pmi_nats"] = float(result.pmi[i])
            row["pmi_stderr"] = None if result.pmi_stderr is None else float(result.pmi_stderr[i])
            row["information_map"] = heatmap_uri(result.pmi_map[i].clamp_min(0))
        scores.append(row)
    return {
        "model": model.name,
        "levels": result.levels,
        "map_max_bits": top,
        "nfe_per_image": result.nfe_per_image,
        "scores": scores,
        "seconds": round(time.perf_counter() - start, 4),
    }
