"""Draw samples from a denoiser in batches: initial noise, schedule, optional guidance, one sampler.

This is the convenience layer the CLI, the trainer's sample grids and the metrics use. Everything it does is
explicit and reproducible: the initial noise and every later draw come from the caller's ``generator``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from diffsight.errors import DiffsightError
from diffsight.models.denoiser import Denoiser
from diffsight.sampling.guidance import ClassifierFreeGuidance
from diffsight.sampling.records import Callback
from diffsight.sampling.registry import get_sampler
from diffsight.sampling.schedules import karras_sigmas

__all__ = ["generate_samples"]


def generate_samples(
    denoiser: Denoiser,
    event_shape: Sequence[int],
    n: int,
    *,
    steps: int = 20,
    sampler: str = "dpmpp_2m",
    sigmas: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    labels: torch.Tensor | None = None,
    guidance: float = 1.0,
    null_class: int | None = None,
    batch_size: int = 256,
    callback: Callback | None = None,
    sampler_options: dict[str, Any] | None = None,
    part: slice | None = None,
) -> torch.Tensor:
    """``n`` samples shaped ``(n, *event_shape)``.

    Args:
        denoiser: ``D(x, sigma, cond)`` with ``sigma_min`` / ``sigma_max`` attributes.
        steps: number of sampler steps on a Karras schedule (rho = 7) over the denoiser's sigma range, unless
            ``sigmas`` is given.
        sampler: a name from :data:`diffsight.sampling.SAMPLERS`.
        generator: source of the initial noise and of any noise the sampler draws.
        labels: class index per sample (n,), or None for unconditional sampling (the null class when the model
            is conditional).
        guidance: classifier-free guidance scale (1 = plain conditional model); needs ``labels`` and ``null_class``.
        batch_size: samples per network call batch (memory bound); batches run one after another.
        callback: receives each step's :class:`~diffsight.sampling.StepRecord` (per batch).
        part: generate only these rows of the ``n`` (a contiguous slice; returns ``(len(part), *event_shape)``).
            The initial noise of all ``n`` is still drawn, so with a deterministic sampler the rows equal those of
            the full run: this is how work is shared between processes (``training.distributed``).
    """
    if n < 1:
        raise DiffsightError(f"n must be at least 1, got {n}")
    if batch_size < 1:
        raise DiffsightError(f"batch_size must be at least 1, got {batch_size}")
    run = get_sampler(sampler)
    if sigmas is None:
        if steps < 1:
            raise DiffsightError(f"steps must be at least 1, got {steps}")
        sigmas = karras_sigmas(steps, float(denoiser.sigma_min), float(denoiser.sigma_max))
    if labels is not None:
        labels = torch.as_tensor(labels).long().reshape(-1)
        if labels.shape[0] != n:
            raise DiffsightError(f"need one label per sample ({n}), got {labels.shape[0]}")
    model: Denoiser = denoiser
    if guidance != 1.0:
        if labels is None or null_class is None:
            raise DiffsightError("guidance needs a class-conditional model and a class for every sample")
        model = ClassifierFreeGuidance(denoiser, guidance, null_class)
    param = next(iter(getattr(denoiser, "parameters", lambda: iter(()))()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    # All initial noise in one draw, so the samples do not depend on batch_size (torch's CPU randn switches
    # algorithm for small tensors, so per-batch draws would).
    initial = torch.randn((n, *event_shape), generator=generator, dtype=torch.float32)  # (n, *event)
    rows = range(n)[part] if part is not None else range(n)
    if part is not None and rows.step != 1:
        raise DiffsightError(f"part must be a contiguous slice of the {n} samples, got {part}")
    first, stop = (rows.start, rows.stop) if len(rows) else (0, 0)
    out = []
    for start in range(first, stop, batch_size):
        b = min(batch_size, stop - start)
        x = initial[start : start + b].to(device, dtype) * sigmas[0].item()
        cond = None if labels is None else labels[start : start + b].to(device)
        out.append(run(model, x, sigmas, cond=cond, generator=generator, callback=callback, **(sampler_options or {})))
    return torch.cat(out) if out else initial[:0].to(device, dtype)
