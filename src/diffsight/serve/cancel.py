"""Stopping work that nobody waits for: a per-request flag and deadline, checked inside the computation.

A :class:`Job` is created when a request is admitted. The sampler callback and :class:`CancellableDenoiser`
(which wraps the model's denoiser for explain and score, where no per-step callback exists) call
``job.check()`` before each network evaluation, so a client that disconnects, a request past its time limit,
or a server shutting down stops the work within one evaluation instead of running it to the end.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import torch
from torch import nn

__all__ = ["Cancelled", "CancellableDenoiser", "Job", "TimedOut"]


class Cancelled(Exception):
    """The work was cancelled: the client went away or the server is shutting down."""


class TimedOut(Exception):
    """The request ran past the server's time limit."""


class Job:
    """The cancel flag and deadline of one admitted request.

    Args:
        timeout: seconds from admission (queue wait included) until :meth:`check` raises :class:`TimedOut`.
    """

    def __init__(self, timeout: float) -> None:
        self.admitted = time.monotonic()
        self.deadline = self.admitted + timeout
        self.timeout = timeout
        self._flag = threading.Event()
        self.reason = ""

    def cancel(self, reason: str) -> None:
        """Ask the work to stop at its next check (idempotent; the first reason is kept)."""
        if not self._flag.is_set():
            self.reason = reason
            self._flag.set()

    @property
    def cancelled(self) -> bool:
        return self._flag.is_set()

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def check(self) -> None:
        """Raise :class:`Cancelled` or :class:`TimedOut` when the work should stop."""
        if self._flag.is_set():
            raise Cancelled(self.reason or "cancelled")
        if time.monotonic() > self.deadline:
            raise TimedOut(f"the request took longer than the server's limit of {self.timeout:g} s")


class CancellableDenoiser(nn.Module):
    """``D(x, sigma, cond)`` that checks ``job`` before every evaluation of the wrapped denoiser.

    It keeps the inner denoiser as a submodule (so ``parameters()`` tells explainers its device and dtype) and
    forwards ``sigma_min``/``sigma_max``; gradients pass through unchanged.
    """

    def __init__(self, inner: nn.Module, job: Job) -> None:
        super().__init__()
        self.inner = inner
        self.job = job
        self.sigma_min = float(inner.sigma_min)
        self.sigma_max = float(inner.sigma_max)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: Any = None) -> torch.Tensor:
        self.job.check()
        return self.inner(x, sigma, cond)
