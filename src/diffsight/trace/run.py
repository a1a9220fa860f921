"""Record a sampling run as a Trace, and replay a Trace exactly.

``record_trace(model, seed=3)`` samples like :func:`diffsight.sampling.generate_samples` (the initial noise is
one draw from ``torch.Generator().manual_seed(seed)``, scaled by ``sigmas[0]``; any noise the sampler draws
comes from the same generator) and returns the :class:`Trace`. ``replay(trace)`` runs the same sampler from the
recorded initial state with the recorded noise, so on the same machine it reproduces the run bit for bit.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from diffsight._version import __version__
from diffsight.errors import DiffsightError
from diffsight.models.denoiser import Denoiser
from diffsight.models.folder import LoadedModel, load_model
from diffsight.models.labels import class_labels
from diffsight.sampling.guidance import ClassifierFreeGuidance
from diffsight.sampling.records import NoiseFn, StepRecord, replay_noise
from diffsight.sampling.registry import DETERMINISTIC_SAMPLERS, get_sampler
from diffsight.sampling.schedules import karras_sigmas
from diffsight.trace.record import TRACE_FORMAT, TRACE_FORMAT_VERSION, Trace
from diffsight.trace.recorder import TraceRecorder

__all__ = ["ReplayResult", "guided_denoiser", "model_of_trace", "record_trace", "replay"]

_DRAWS_PER_STEP = {"ddpm": 1, "pc": 2, "euler": 1, "heun": 1}  # upper bounds, for the memory estimate only


def _model_meta(model: LoadedModel | None, model_id: str | None) -> dict[str, Any]:
    if model is None:
        return {"name": model_id or "denoiser", "source": "in-memory denoiser", "sha256": None}
    return {
        "name": model.name,
        "source": "shipped" if model.is_shipped else str(model.path),
        "sha256": model.weights_sha256(),
        "kind": model.kind,
        "num_classes": model.num_classes,
        "class_names": list(model.class_names),
        "factors": model.info.get("factors") or {},
    }


def _cpu_noise(generator: torch.Generator) -> NoiseFn:
    """Draws from a CPU generator, moved to the run's device: the same numbers whatever the device."""

    def draw(step: int, k: int, like: torch.Tensor) -> torch.Tensor:
        return torch.randn(like.shape, generator=generator, dtype=torch.float32).to(like.device, like.dtype)

    return draw


def guided_denoiser(denoiser: Denoiser, guidance: float, null_class: int | None) -> Denoiser:
    """``denoiser`` itself for ``guidance == 1``, else wrapped in classifier-free guidance."""
    if float(guidance) == 1.0:
        return denoiser
    if null_class is None:
        raise DiffsightError("guidance needs a class-conditional model with a null class")
    return ClassifierFreeGuidance(denoiser, float(guidance), null_class)


def record_trace(
    model: LoadedModel | Denoiser,
    *,
    seed: int = 0,
    n: int = 1,
    steps: int = 20,
    sampler: str = "dpmpp_2m",
    labels: int | Sequence[int] | torch.Tensor | None = None,
    guidance: float = 1.0,
    sigmas: torch.Tensor | None = None,
    stride: int = 1,
    dtype: torch.dtype = torch.float32,
    memory_budget: int | None = None,
    sampler_options: dict[str, Any] | None = None,
    event_shape: Sequence[int] | None = None,
    model_id: str | None = None,
    null_class: int | None = None,
    callback: Callable[[StepRecord], None] | None = None,
) -> Trace:
    """Sample ``n`` items and record the run.

    Args:
        model: a loaded model folder, or any denoiser (then pass ``event_shape``; ``model_id`` names it).
        seed: seeds the generator of the initial noise and of every draw of a stochastic sampler.
        labels: one class for all samples or one per sample (class-conditional models).
        guidance: classifier-free guidance scale (1 = none).
        sigmas: the schedule (default: Karras, rho 7, ``steps`` steps over the model's sigma range).
        stride, dtype, memory_budget: what to keep of x and x0_hat (:class:`TraceRecorder`).
        callback: also receives every step (progress bars, live previews).
    """
    loaded = model if isinstance(model, LoadedModel) else None
    denoiser: Denoiser = loaded.denoiser if loaded is not None else model
    shape = tuple(loaded.event_shape) if loaded is not None else tuple(event_shape or ())
    if not shape:
        raise DiffsightError("pass event_shape= when tracing a bare denoiser")
    if n < 1:
        raise DiffsightError(f"n must be at least 1, got {n}")
    run = get_sampler(sampler)
    if sigmas is None:
        if steps < 1:
            raise DiffsightError(f"steps must be at least 1, got {steps}")
        sigmas = karras_sigmas(steps, float(denoiser.sigma_min), float(denoiser.sigma_max))
    sigmas = sigmas.to(torch.float64)
    num_classes = loaded.num_classes if loaded is not None else 0
    null = loaded.null_class if loaded is not None else null_class
    cond = None
    if labels is not None:
        if loaded is not None and num_classes == 0:
            raise DiffsightError(f"{loaded.name} is unconditional: drop the class")
        cond = torch.as_tensor(labels).long().reshape(-1)
        if cond.numel() == 1:
            cond = cond.expand(n).clone()
        if cond.shape[0] != n:
            raise DiffsightError(f"need one label or one per sample ({n}), got {cond.shape[0]}")
        if loaded is not None:
            cond = class_labels(cond, n, null, torch.device("cpu"))
    elif loaded is not None and num_classes > 0:
        cond = torch.full((n,), int(null), dtype=torch.long)  # unconditional through the null class
    if guidance != 1.0 and (labels is None):
        raise DiffsightError("guidance needs a class: pass labels=")
    recorder = TraceRecorder(
        len(sigmas) - 1,
        n,
        shape,
        stride=stride,
        dtype=dtype,
        memory_budget=memory_budget,
        draws_per_step=_DRAWS_PER_STEP.get(sampler, 0) if sampler not in DETERMINISTIC_SAMPLERS else 0,
    )

    def both(record: StepRecord) -> None:
        recorder(record)
        if callback is not None:
            callback(record)

    param = next(iter(getattr(denoiser, "parameters", lambda: iter(()))()), None)
    device = param.device if param is not None else torch.device("cpu")
    work_dtype = param.dtype if param is not None else torch.float32
    generator = torch.Generator().manual_seed(int(seed))
    x_init = torch.randn((n, *shape), generator=generator, dtype=torch.float32) * float(sigmas[0])  # (n, *event)
    start = time.perf_counter()
    final = run(
        guided_denoiser(denoiser, guidance, null),
        x_init.to(device, work_dtype),
        sigmas,
        cond=None if cond is None else cond.to(device),
        noise=_cpu_noise(generator),
        callback=both,
        **(sampler_options or {}),
    )
    seconds = time.perf_counter() - start
    meta: dict[str, Any] = {
        "format": TRACE_FORMAT,
        "format_version": TRACE_FORMAT_VERSION,
        "diffsight_version": __version__,
        "model": _model_meta(loaded, model_id),
        "sampler": sampler,
        "sampler_options": dict(sampler_options or {}),
        "sigmas": [float(s) for s in sigmas.tolist()],
        "seed": int(seed),
        "n": n,
        "labels": None if labels is None or cond is None else [int(c) for c in cond.tolist()],
        "class_names": (
            None
            if labels is None or loaded is None or cond is None
            else [loaded.class_names[int(c)] if int(c) < num_classes else "(none)" for c in cond.tolist()]
        ),
        "null_class": null,
        "guidance": float(guidance),
        "stride": stride,
        "dtype": str(dtype).removeprefix("torch."),
        "nfe": recorder.nfe,
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "device": str(device),
        },
        "sampling_seconds": round(seconds, 4),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    tensors = {
        "x_init": x_init,
        "final": final.detach().to("cpu", torch.float32, copy=True),
        **recorder.tensors(),
    }
    if loaded is not None and loaded.is_latent:  # latent diffusion: keep the decoded estimates too (trace/latent.py)
        from diffsight.trace.latent import decoded_tensors, latent_meta

        meta["latent"] = latent_meta(loaded)
        tensors.update(decoded_tensors(loaded, tensors["x0_hat"], tensors["final"], dtype=dtype))
    return Trace(meta=meta, tensors=tensors)


def model_of_trace(trace: Trace, *, device: str | torch.device = "cpu", check: bool = True) -> LoadedModel:
    """Load the model a Trace was recorded with (shipped name or folder) and check its weights' hash."""
    info = trace.meta.get("model", {})
    source = info.get("source")
    if source in (None, "in-memory denoiser"):
        raise DiffsightError(
            f"trace {trace.id} was recorded with an in-memory denoiser ({info.get('name')}): pass denoiser= to replay"
        )
    model = load_model(info["name"] if source == "shipped" else source, device=device)
    if check and info.get("sha256") and model.weights_sha256() != info["sha256"]:
        raise DiffsightError(
            f"trace {trace.id} was recorded with weights {info['sha256'][:12]}..., but {model.path} holds "
            f"{model.weights_sha256()[:12]}...: load the model it was recorded with"
        )
    return model


@dataclass(frozen=True)
class ReplayResult:
    """The outcome of :func:`replay`: the replayed sample, whether it equals the recorded one bit for bit, and the
    largest absolute difference."""

    final: torch.Tensor
    bit_exact: bool
    max_abs_diff: float


def replay(trace: Trace, *, model: LoadedModel | None = None, denoiser: Denoiser | None = None) -> ReplayResult:
    """Re-run the recorded sampler from the recorded initial state with the recorded noise."""
    if denoiser is None:
        model = model if model is not None else model_of_trace(trace)
        denoiser = model.denoiser
    m = trace.meta
    cond = trace.labels
    if cond is None and m["model"].get("num_classes", 0) > 0:
        cond = torch.full((trace.batch_size,), int(m["null_class"]), dtype=torch.long)
    param = next(iter(getattr(denoiser, "parameters", lambda: iter(()))()), None)
    device = param.device if param is not None else torch.device("cpu")
    work_dtype = param.dtype if param is not None else torch.float32
    out = get_sampler(m["sampler"])(
        guided_denoiser(denoiser, float(m["guidance"]), m.get("null_class")),
        trace.tensors["x_init"].to(device, work_dtype),
        trace.sigmas,
        cond=None if cond is None else cond.to(device),
        noise=replay_noise(trace.noise()),
        **m.get("sampler_options", {}),
    )
    out = out.detach().to("cpu", torch.float32)
    diff = float((out - trace.final).abs().max()) if out.shape == trace.final.shape else float("inf")
    return ReplayResult(final=out, bit_exact=bool(torch.equal(out, trace.final)), max_abs_diff=diff)
