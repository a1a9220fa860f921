"""Guidance map: where, and at which step, the class condition changes the denoiser's estimate.

At every recorded step s of a class-conditional trace the explainer evaluates the denoiser twice at the
recorded state x_s: with the trace's class c and with the null class (classifier-free guidance's "no
condition", Ho & Salimans 2022, eq. 6), and keeps the difference

    delta_s = D(x_s, sigma_s | c) - D(x_s, sigma_s | null)            (S, *event)

This is exactly the direction that classifier-free guidance amplifies: the guided estimate is
``D(x | null) + w * delta``, so the guided run departs from the plain conditional one by ``(w - 1) * delta``.
It is also Wen et al.'s (ICLR 2024) text-conditional noise magnitude (xai.md, sections 7c and 12, target iv),
here in x0 units and per step. Per step the explainer reports

- ``map``       (S, H, W) L2 norm of delta over channels (images), or (S, *event) |delta| (other data);
- ``magnitude`` (S,)      RMS of delta over all its elements;
- ``share``     (S,)      the fraction of the total squared difference (summed over recorded steps) at each step;
- ``peak_step`` int       the sampler step where ``magnitude`` is largest;
- ``centre_step`` float   the share-weighted mean sampler step (centre of mass of the condition's effect).

The differences are evaluated at the recorded states of the trajectory (which the guided sampler produced when
the trace used guidance), so they answer "along this run, when did the condition matter". Both branches of
every step go through the network in batches of ``batch_size`` evaluations, under ``torch.no_grad()``.
"""

from __future__ import annotations

import math
import time

import torch

from diffsight.errors import DiffsightError
from diffsight.explain.explanation import Explanation
from diffsight.models.denoiser import Denoiser
from diffsight.models.folder import LoadedModel
from diffsight.trace.record import Trace

__all__ = ["GuidanceMap", "effect_window"]


def effect_window(share: torch.Tensor, fraction: float = 0.8) -> tuple[int, int]:
    """The shortest run of consecutive rows ``[first, last]`` whose ``share`` adds up to at least ``fraction``.

    Ties go to the run holding the larger share, then to the earlier run. An all-zero ``share`` gives the
    whole range.
    """
    values = [float(v) for v in share.tolist()]
    total = sum(values)
    if not values or total <= 0:
        return 0, max(len(values) - 1, 0)
    need = fraction * total * (1 - 1e-9)  # rounding must not make "all rows" miss a fraction of 1
    best: tuple[int, float, int, int] | None = None  # (length, -held, first, last)
    for first in range(len(values)):
        held = 0.0
        for last in range(first, len(values)):
            held += values[last]
            if held >= need:
                key = (last - first + 1, -held, first, last)
                if best is None or key[:2] < best[:2]:
                    best = key
                break
    assert best is not None  # the full range always holds the total
    return best[2], best[3]


def _work_place(denoiser: Denoiser) -> tuple[torch.device, torch.dtype]:
    param = next(iter(getattr(denoiser, "parameters", lambda: iter(()))()), None)
    if param is None:
        return torch.device("cpu"), torch.float32
    return param.device, param.dtype


class GuidanceMap:
    """Per-step, per-pixel size of ``D(x_s | c) - D(x_s | null)`` along one sample of a class-conditional trace.

    Args:
        trace: a trace recorded with ``labels=`` on a model with a null class (guided or not).
        denoiser: the (unguided) denoiser the trace was recorded with, or its :class:`LoadedModel`.
        sample: which sample of the trace's batch to explain.
        batch_size: network evaluations per batch (both branches of all steps are batched together).
    """

    method = "guidance"

    def __init__(
        self, trace: Trace, denoiser: Denoiser | LoadedModel, *, sample: int = 0, batch_size: int = 64
    ) -> None:
        if not 0 <= sample < trace.batch_size:
            raise DiffsightError(f"sample must lie in 0..{trace.batch_size - 1}, got {sample}")
        if batch_size < 1:
            raise DiffsightError(f"batch_size must be at least 1, got {batch_size}")
        if trace.labels is None:
            raise DiffsightError(
                f"trace {trace.id} has no class labels: record it with labels= on a class-conditional model to "
                "see where the condition acts"
            )
        if trace.meta.get("null_class") is None:
            raise DiffsightError(
                f"trace {trace.id} names no null class: the guidance map compares D(x | class) with D(x | null), "
                "so it needs a model trained with a null class (record_trace(..., null_class=) for a bare denoiser)"
            )
        self.trace = trace
        self.denoiser: Denoiser = denoiser.denoiser if isinstance(denoiser, LoadedModel) else denoiser
        self.sample = sample
        self.batch_size = batch_size

    def _differences(self, x: torch.Tensor, sigma: torch.Tensor, label: int, null: int) -> torch.Tensor:
        """delta (S, *event) for states x (S, *event) at noise levels sigma (S,)."""
        device, dtype = _work_place(self.denoiser)
        s = x.shape[0]
        xs = torch.cat([x, x]).to(device, dtype)  # (2S, *event): conditional branch, then null branch
        sig = torch.cat([sigma, sigma]).to(device, dtype)  # (2S,)
        cond = torch.cat([torch.full((s,), label, dtype=torch.long), torch.full((s,), null, dtype=torch.long)]).to(
            device
        )  # (2S,)
        outs = []
        with torch.no_grad():
            for lo in range(0, 2 * s, self.batch_size):
                hi = lo + self.batch_size
                outs.append(self.denoiser(xs[lo:hi], sig[lo:hi], cond[lo:hi]).float().cpu())
        both = torch.cat(outs)  # (2S, *event)
        return both[:s] - both[s:]

    def explain(self) -> Explanation:
        t = self.trace
        start = time.perf_counter()
        labels = t.labels
        assert labels is not None  # checked in __init__
        label, null = int(labels[self.sample]), int(t.meta["null_class"])
        x = t.x[:, self.sample].float()  # (S, *event)
        sigma = t.tensors["sigma"]  # (S,) float64
        steps = t.tensors["step_index"]  # (S,) long
        delta = self._differences(x, sigma, label, null)  # (S, *event)
        flat = delta.reshape(delta.shape[0], -1)  # (S, D)
        squared = flat.double().pow(2).sum(1)  # (S,) float64
        magnitude = flat.pow(2).mean(1).sqrt()  # (S,)
        total = float(squared.sum())
        share = (squared / total).float() if total > 0 else torch.zeros_like(magnitude)
        dmap = delta.pow(2).sum(1).sqrt() if t.is_image else delta.abs()  # (S, H, W) or (S, *event)
        peak_row = int(magnitude.argmax())
        peak_step = int(steps[peak_row])
        centre = float((share.double() * steps.double()).sum()) if total > 0 else math.nan
        first, last = effect_window(share, 0.8)
        seconds = time.perf_counter() - start
        n = t.num_steps
        name = (t.meta.get("class_names") or [None] * t.batch_size)[self.sample] or str(label)
        if total > 0:
            summary = (
                f"the condition ({name}) acts most at step {peak_step} of {n} (sigma {float(sigma[peak_row]):.3g}); "
                f"80% of its effect falls in steps {int(steps[first])}-{int(steps[last])} "
                f"(centre of mass step {centre:.1f})"
            )
        else:
            summary = f"the condition ({name}) does not change the denoiser's estimate at any recorded step"
        return Explanation(
            method=self.method,
            values={
                "step": steps.clone(),
                "sigma": sigma.clone(),
                "map": dmap,
                "difference": delta,
                "magnitude": magnitude,
                "share": share,
                "peak_step": peak_step,
                "centre_step": centre,
            },
            params={"sample": self.sample, "label": label, "null_class": null, "batch_size": self.batch_size},
            diagnostics={
                "nfe": 2 * x.shape[0],
                "seconds": round(seconds, 4),
                "recorded_steps": x.shape[0],
                "num_steps": n,
                "guidance": float(t.meta.get("guidance", 1.0)),
                "effect_window": [int(steps[first]), int(steps[last])],
            },
            summary=summary,
            trace_id=t.id,
        )
