"""What a sampler reports about each step, and where its random numbers come from.

Every sampler calls ``callback(StepRecord)`` once per step, after the step. The Trace, progress bars and the
live viewer are all built on this one hook (STYLE.md, principle 9). Noise is drawn through a
:data:`NoiseFn`, so a run can be replayed from the noise it recorded instead of from a generator.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from diffsight.errors import ShapeError

__all__ = ["Callback", "NoiseFn", "StepRecord", "generator_noise", "randn_like", "replay_noise"]


@dataclass(frozen=True, eq=False)
class StepRecord:
    """One step of a sampler, from noise level ``sigma`` to ``sigma_next``.

    Attributes:
        index: position of ``sigma`` in the sampler's sigma array.
        sigma: noise level of ``x`` (before any churn).
        sigma_next: noise level of ``x_next``.
        x: state entering the step, shape ``(B, *event)``.
        x0_hat: the denoiser's estimate of the clean data that drove the step (its first evaluation in the
            step; for Heun with churn, the evaluation at the raised level ``sigma_hat``).
        x_next: state leaving the step.
        noise: every standard-normal tensor the step drew, in the order drawn (empty when deterministic).
        nfe: network evaluations spent in this step.
        sampler: registry name of the sampler that made the step.

    Tensors are the live ones of the run: they carry autograd history when the caller records gradients.
    Detach or clone them in the callback if you keep them.
    """

    index: int
    sigma: float
    sigma_next: float
    x: torch.Tensor
    x0_hat: torch.Tensor
    x_next: torch.Tensor
    noise: tuple[torch.Tensor, ...]
    nfe: int
    sampler: str


Callback = Callable[[StepRecord], None]
"""Called once per step with its :class:`StepRecord`."""

NoiseFn = Callable[[int, int, torch.Tensor], torch.Tensor]
"""``noise(step_index, draw_index, like) -> tensor`` shaped like ``like``: a standard-normal draw."""

GeneratorArg = torch.Generator | Sequence[torch.Generator] | None


def randn_like(like: torch.Tensor, generator: GeneratorArg = None) -> torch.Tensor:
    """Standard-normal noise shaped like ``like`` (same dtype and device).

    ``generator`` may be one generator, or one per batch element: then element ``b`` is drawn from
    ``generator[b]`` alone, so sampling a batch equals sampling its elements one by one.
    """
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)
    gens = list(generator)
    if len(gens) != like.shape[0]:
        raise ShapeError(f"got {len(gens)} generators for a batch of {like.shape[0]}: pass one per sample, or one")
    return torch.cat(
        [torch.randn((1, *like.shape[1:]), generator=g, dtype=like.dtype, device=like.device) for g in gens]
    )


def generator_noise(generator: GeneratorArg = None) -> NoiseFn:
    """The default noise source: fresh draws from ``generator`` (see :func:`randn_like`)."""

    def draw(step: int, k: int, like: torch.Tensor) -> torch.Tensor:
        return randn_like(like, generator)

    return draw


def replay_noise(recorded: Mapping[int, Sequence[torch.Tensor]]) -> NoiseFn:
    """A noise source that hands back recorded draws: ``recorded[step][k]``.

    Build it from step records (``{r.index: r.noise for r in records}``) to re-run a stochastic sampler
    exactly, from the start or from any step.
    """

    def draw(step: int, k: int, like: torch.Tensor) -> torch.Tensor:
        try:
            z = recorded[step][k]
        except (KeyError, IndexError) as err:
            raise ShapeError(f"no recorded noise for step {step}, draw {k}: record the run you replay") from err
        if z.shape != like.shape:
            raise ShapeError(f"recorded noise for step {step} has shape {tuple(z.shape)}, expected {tuple(like.shape)}")
        return z.to(dtype=like.dtype, device=like.device)

    return draw
