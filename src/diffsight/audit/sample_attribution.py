"""Which training images did a generated sample come from: TRAK over a model's whole training set, for the audit.

:class:`~diffsight.audit.data_attribution.TrainingAttribution` does the maths (TRAK with a sampled Gauss-Newton
kernel, per-level gradient normalisation, a random projection; Park et al. 2023, Zheng et al. 2024). This module
chooses settings that fit a whole training set on a CPU and reports, for a few generated samples, the training
images with the highest scores beside the nearest images in pixels, and, along one recorded Trace, which training
images the denoiser's estimate x0_hat is attributed to at each step (Journey-TRAK, Georgiev et al. 2023).

Cost: featurising is one backward pass per training image, noise level and draw, plus the same again for the
kernel's probes. To keep it to minutes on a CPU, the gradients of a diffusers UNet are taken only through its last
up block and output layers (``parameters``): the backward pass then stops there. This is a restricted model
function, the usual "last layers" approximation of influence (Yeh et al. 2018, representer points); pass
``parameters=None`` to attribute through every weight when time allows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from diffsight.audit.data_attribution import TrainingAttribution
from diffsight.data.dataset import TrainingData
from diffsight.errors import DiffsightError
from diffsight.models.folder import LoadedModel
from diffsight.trace.run import record_trace

__all__ = ["SampleAttribution", "attribute_samples", "last_block_parameters"]

DEFAULT_LEVELS = (0.1, 0.4, 1.5)


def last_block_parameters(denoiser: nn.Module) -> list[str] | None:
    """Name prefixes of a diffusers UNet's last up block and output layers inside ``denoiser``, or None (no UNet
    found: attribute through every parameter)."""
    names = [name for name, _ in denoiser.named_parameters()]
    ups = [n for n in names if ".up_blocks." in f".{n}"]
    if not ups:
        return None
    stem = ups[0][: ups[0].index("up_blocks.")]  # e.g. "backbone.unet."
    last = max(int(n[len(stem) + len("up_blocks.") :].split(".")[0]) for n in ups if n.startswith(stem))
    prefixes = [f"{stem}up_blocks.{last}.", f"{stem}conv_norm_out.", f"{stem}conv_out."]
    return [p for p in prefixes if any(n.startswith(p) for n in names)]


@dataclass(frozen=True, eq=False)
class SampleAttribution:
    """TRAK attribution of a few generated samples (and of one Trace, step by step) to the training set.

    Attributes:
        indices: which of the audited samples were attributed (m,).
        top: training indices with the highest scores, best first (m, k).
        scores: their TRAK scores (m, k).
        pixel_nearest: each sample's nearest training image in pixels (m,), for comparison.
        per_step: for the Trace: ``{"trace_id", "steps", "sigmas", "top" (S, k), "scores" (S, k), "final_top"
            (the training index ranked first at the last step), "final_top_scores" (its score at every step),
            "final_top_ranks" (its rank at every step, 1 = first)}``, or None.
        params: the settings (parameters attributed through, levels, draws, projection dim, kernel, sizes).
        seconds: wall time of featurising, scoring and the Trace.
    """

    indices: list[int]
    top: torch.Tensor
    scores: torch.Tensor
    pixel_nearest: torch.Tensor
    per_step: dict[str, Any] | None
    params: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def top1_is_pixel_nearest(self) -> float:
        """Share of samples whose first-ranked training image is also their nearest one in pixels."""
        if not self.indices:
            return math.nan
        return float((self.top[:, 0] == self.pixel_nearest).double().mean())

    def summary(self) -> str:
        m = len(self.indices)
        text = (
            f"TRAK over {self.params.get('num_train')} training images for {m} samples: the first-ranked training "
            f"image is the nearest one in pixels for {self.top1_is_pixel_nearest:.0%} of them"
        )
        if self.per_step is not None:
            ranks = self.per_step["final_top_ranks"]
            settled = next((i for i, r in enumerate(ranks) if all(x == 1 for x in ranks[i:])), len(ranks) - 1)
            text += (
                f"; along trace {self.per_step['trace_id']}, the training image ranked first at the end leads from "
                f"step {self.per_step['steps'][settled]} of {len(ranks)} recorded steps on"
            )
        return text + "."

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": "TRAK (sampled Gauss-Newton kernel, per-level normalised gradients, random projection)",
            "params": dict(self.params),
            "samples": [
                {
                    "sample": i,
                    "top": [int(t) for t in self.top[row]],
                    "scores": [float(s) for s in self.scores[row]],
                    "pixel_nearest": int(self.pixel_nearest[row]),
                }
                for row, i in enumerate(self.indices)
            ],
            "top1_is_pixel_nearest": self.top1_is_pixel_nearest,
            "seconds": round(self.seconds, 2),
            "summary": self.summary(),
        }
        if self.per_step is not None:
            step = {key: value for key, value in self.per_step.items() if key != "x0_hat"}
            step["top"] = [[int(t) for t in row] for row in step["top"]]
            step["scores"] = [[float(s) for s in row] for row in step["scores"]]
            out["per_step"] = step
        return out


def attribute_samples(
    model: LoadedModel,
    train: TrainingData,
    samples: torch.Tensor,
    indices: Sequence[int],
    *,
    labels: torch.Tensor | None = None,
    k: int = 5,
    levels: Sequence[float] = DEFAULT_LEVELS,
    draws: int = 2,
    projection_dim: int = 256,
    parameters: Sequence[str] | None | str = "last_block",
    trace_seed: int | None = 0,
    steps: int = 20,
    sampler: str = "dpmpp_2m",
    seed: int = 0,
    batch_size: int = 64,
    progress: Callable[[str], None] | None = None,
) -> SampleAttribution:
    """Attribute ``samples[indices]`` (and, with ``trace_seed``, one recorded Trace step by step) to ``train``.

    Args:
        model: the model that made the samples; its denoiser must be an ``nn.Module``.
        train: its training data (labels are used as the training conditions of a class-conditional model).
        samples: the audited samples (n, *event); ``labels`` their classes (n,) for a conditional model.
        indices: which samples to attribute.
        k: training images reported per sample.
        levels, draws, projection_dim: TRAK settings (noise levels of the model function, noise draws per
            example and level, JL projection dimension).
        parameters: ``"last_block"`` (default: a UNet's last up block and output layers), None (every parameter)
            or explicit name prefixes.
        trace_seed: record one Trace with this seed (class of the first attributed sample) and attribute every
            recorded step; None skips it.
    """
    say = progress or (lambda _line: None)
    if not isinstance(model.denoiser, nn.Module):
        raise DiffsightError("training-data attribution needs a model whose denoiser is an nn.Module")
    if k < 1:
        raise DiffsightError(f"k must be at least 1, got {k}")
    indices = [int(i) for i in indices]
    if any(i < 0 or i >= samples.shape[0] for i in indices):
        raise DiffsightError(f"sample indices must lie in 0..{samples.shape[0] - 1}, got {indices}")
    conditional = model.num_classes > 0
    if conditional and (labels is None or train.labels is None):
        raise DiffsightError("a class-conditional model needs the samples' labels and labelled training data")
    prefixes = last_block_parameters(model.denoiser) if parameters == "last_block" else parameters
    start = time.perf_counter()
    attribution = TrainingAttribution(
        model.denoiser,
        train.samples,
        labels=train.labels if conditional else None,
        sigmas=list(levels),
        draws=draws,
        projection_dim=projection_dim,
        parameters=None if prefixes is None else list(prefixes),
        seed=seed,
        batch_size=batch_size,
    )
    say(
        f"attribution: featurising {len(train)} training images through {attribution.num_params:,} parameters "
        f"({len(levels)} noise levels x {draws} draws, projected to {projection_dim})"
    )
    quarters: set[int] = set()

    def told(done: int, total: int) -> None:  # one line per quarter of the training set
        quarter = 4 * done // total
        if quarter not in quarters:
            quarters.add(quarter)
            say(f"attribution: {done}/{total} training images featurised ({time.perf_counter() - start:.0f} s)")

    attribution.featurize(progress=told)
    chosen = samples[indices]
    cond = labels[indices] if conditional and labels is not None else None
    scores = attribution.scores(chosen, cond=cond)  # (m, N)
    kk = min(k, scores.shape[1])
    top_scores, top = torch.topk(scores, kk, dim=1)
    flat_train = train.samples.reshape(len(train), -1).to(chosen.dtype)
    pixel_nearest = torch.cdist(chosen.reshape(len(indices), -1), flat_train).argmin(1)
    per_step = None
    if trace_seed is not None:
        label = None if cond is None else int(cond[0])
        say(f"attribution: recording and attributing one trace (seed {trace_seed}) step by step")
        trace = record_trace(model, seed=trace_seed, n=1, steps=steps, sampler=sampler, labels=label)
        step_scores = attribution.step_scores(trace)  # (S, N)
        s_top_scores, s_top = torch.topk(step_scores, kk, dim=1)
        final = int(s_top[-1, 0])
        ranks = (step_scores > step_scores[:, final : final + 1]).sum(1) + 1  # (S,)
        per_step = {
            "trace_id": trace.id,
            "label": label,
            "steps": [int(s) for s in trace.step_index],
            "sigmas": [float(s) for s in trace.tensors["sigma"]],
            "top": s_top,
            "scores": s_top_scores,
            "final_top": final,
            "final_top_scores": [float(v) for v in step_scores[:, final]],
            "final_top_ranks": [int(r) for r in ranks],
            "x0_hat": trace.x0_hat[:, 0],
        }
    params = {
        "num_train": len(train),
        "parameters": "all" if prefixes is None else list(prefixes),
        "num_params": attribution.num_params,
        "levels": list(levels),
        "draws": draws,
        "projection_dim": projection_dim,
        "kernel": attribution.kernel,
        "output": attribution.output,
        "k": kk,
    }
    return SampleAttribution(
        indices=indices,
        top=top,
        scores=top_scores,
        pixel_nearest=pixel_nearest,
        per_step=per_step,
        params=params,
        seconds=time.perf_counter() - start,
    )
