"""Work split across processes launched by ``torchrun`` or ``accelerate launch``, results gathered on every rank.

Training scales out inside :class:`~diffsight.training.Trainer` (data parallel through Accelerate). This module
does the same for the embarrassingly parallel jobs: batch generation, explanation of several seeds, and the
per-example gradients of training-data attribution. Each process takes a contiguous share of the items
(Accelerate's ``split_between_processes`` contract: process ``r`` of ``P`` gets the ``r``-th of ``P`` nearly equal
slices) and :func:`gather_rows` / :func:`gather_items` put the pieces back in order on every process, so the main
process can write the one result file.

With a deterministic sampler, generated samples do not depend on the number of processes: the initial noise of
all ``n`` samples is drawn at once on every process and each takes its rows (see ``generate_samples(part=)``).

On a machine without a GPU, Accelerate forms a CPU (gloo) process group only when asked (``cpu=True``);
:func:`process_state` asks whenever more than one process was launched and no GPU is visible.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, TypeVar

import torch

from diffsight.models.denoiser import Denoiser
from diffsight.sampling.generate import generate_samples

__all__ = ["gather_items", "gather_rows", "generate_split", "is_main_process", "launched", "process_state", "share"]

T = TypeVar("T")


def launched() -> bool:
    """True when this process is one of several started by torchrun / accelerate launch."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def process_state() -> Any:
    """Accelerate's ``PartialState`` for this process (a gloo group on CPUs when several processes were launched)."""
    from accelerate import PartialState

    return PartialState(cpu=launched() and not torch.cuda.is_available())


def is_main_process() -> bool:
    """True on the process that writes results (rank 0, or the only process)."""
    return int(os.environ.get("RANK", "0")) == 0


def share(n: int, num_processes: int | None = None, index: int | None = None) -> slice:
    """This process's contiguous slice of ``n`` items: the first ``n % P`` processes get one extra item."""
    if num_processes is None or index is None:
        if not launched():
            return slice(0, n)
        state = process_state()
        num_processes, index = state.num_processes, state.process_index
    if num_processes < 1 or not 0 <= index < num_processes:
        raise ValueError(f"process index {index} out of range for {num_processes} processes")
    base, extra = divmod(n, num_processes)
    start = index * base + min(index, extra)
    return slice(start, start + base + (1 if index < extra else 0))


def gather_items(items: Sequence[T]) -> list[T]:
    """Concatenate every process's list in rank order (on every process). Our own processes only: objects are
    exchanged by Accelerate's ``gather_object``; never pass anything that came from outside."""
    if not launched():
        return list(items)
    from accelerate.utils import gather_object

    process_state()  # the process group must exist
    return list(gather_object(list(items)))


def gather_rows(rows: torch.Tensor) -> torch.Tensor:
    """Concatenate every process's rows (B_r, ...) along dim 0 in rank order, on every process, on the CPU."""
    if not launched():
        return rows
    parts = gather_items([rows.detach().cpu()])
    return torch.cat(parts)


def generate_split(
    denoiser: Denoiser,
    event_shape: Sequence[int],
    n: int,
    *,
    generator: torch.Generator | None = None,
    labels: torch.Tensor | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """``generate_samples`` with the ``n`` samples shared between the launched processes and gathered: every
    process returns all ``n`` samples (n, *event). Deterministic samplers give the single-process result."""
    part = share(n)
    mine = generate_samples(denoiser, event_shape, n, generator=generator, labels=labels, part=part, **kwargs)
    return gather_rows(mine)
