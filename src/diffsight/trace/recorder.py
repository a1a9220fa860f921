"""A sampler callback that keeps what a Trace needs (DESIGN.md, contract 4).

It works with any sampler, because every sampler reports its steps through the same
:class:`~diffsight.sampling.StepRecord` callback. Tensors are detached and copied to the CPU as they arrive, so
recording never keeps the run's autograd graph alive.
"""

from __future__ import annotations

import math

import torch

from diffsight.errors import DiffsightError
from diffsight.sampling.records import StepRecord

__all__ = ["TraceBudgetError", "TraceRecorder", "recorded_steps"]


class TraceBudgetError(DiffsightError):
    """The trace would not fit in the memory budget the caller set."""


def recorded_steps(num_steps: int, stride: int) -> list[int]:
    """Steps kept at ``stride``: 0, stride, 2*stride, ... and always the last one."""
    if stride < 1:
        raise DiffsightError(f"stride must be at least 1, got {stride}")
    keep = list(range(0, num_steps, stride))
    if keep[-1] != num_steps - 1:
        keep.append(num_steps - 1)
    return keep


class TraceRecorder:
    """Collects x, x0_hat and noise from each :class:`StepRecord`.

    Args:
        num_steps: sampler steps of the run (``len(sigmas) - 1``).
        batch_size, event_shape: of the run.
        stride: keep x and x0_hat of every ``stride``-th step (and the last); noise is kept for every step.
        dtype: storage dtype of x and x0_hat (``torch.float16`` halves the size); noise stays float32 so that
            replays are exact.
        memory_budget: bytes the recorded tensors may take; checked before the run starts, with the stride that
            would fit named in the error.
    """

    def __init__(
        self,
        num_steps: int,
        batch_size: int,
        event_shape: tuple[int, ...],
        *,
        stride: int = 1,
        dtype: torch.dtype = torch.float32,
        memory_budget: int | None = None,
        draws_per_step: int = 0,
    ) -> None:
        if not dtype.is_floating_point:
            raise DiffsightError(f"trace dtype must be a floating-point dtype, got {dtype}")
        self.keep = set(recorded_steps(num_steps, stride))
        self.num_steps = num_steps
        self.stride = stride
        self.dtype = dtype
        numel = batch_size * math.prod(event_shape)
        item = torch.empty((), dtype=dtype).element_size()
        self.estimated_bytes = numel * (2 * len(self.keep) * item + (2 + num_steps * draws_per_step) * 4)
        if memory_budget is not None and self.estimated_bytes > memory_budget:
            fits = next(
                (
                    s
                    for s in range(stride, num_steps + 1)
                    if numel * 2 * len(recorded_steps(num_steps, s)) * item
                    + numel * (2 + num_steps * draws_per_step) * 4
                    <= memory_budget
                ),
                None,
            )
            hint = f"use stride={fits}" if fits is not None else "the noise alone exceeds it: record fewer samples"
            raise TraceBudgetError(
                f"the trace needs about {self.estimated_bytes / 1e6:.1f} MB, over the memory budget of "
                f"{memory_budget / 1e6:.1f} MB: {hint}, or dtype=torch.float16"
            )
        self.steps: list[int] = []
        self.x: list[torch.Tensor] = []
        self.x0_hat: list[torch.Tensor] = []
        self.sigma: list[float] = []
        self.sigma_next: list[float] = []
        self.noise: dict[str, torch.Tensor] = {}
        self.nfe = 0

    def __call__(self, record: StepRecord) -> None:
        self.nfe += record.nfe
        for k, z in enumerate(record.noise):
            self.noise[f"noise.{record.index}.{k}"] = z.detach().to("cpu", torch.float32, copy=True)
        if record.index in self.keep:
            self.steps.append(record.index)
            self.x.append(record.x.detach().to("cpu", self.dtype, copy=True))
            self.x0_hat.append(record.x0_hat.detach().to("cpu", self.dtype, copy=True))
            self.sigma.append(record.sigma)
            self.sigma_next.append(record.sigma_next)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The recorded tensors in the Trace's layout (see :mod:`diffsight.trace.record`)."""
        if not self.steps:
            raise DiffsightError("no step was recorded: pass the recorder as the sampler's callback")
        return {
            "x": torch.stack(self.x),  # (S, B, *event)
            "x0_hat": torch.stack(self.x0_hat),  # (S, B, *event)
            "step_index": torch.tensor(self.steps, dtype=torch.long),
            "sigma": torch.tensor(self.sigma, dtype=torch.float64),
            "sigma_next": torch.tensor(self.sigma_next, dtype=torch.float64),
            **self.noise,
        }
