"""The bounded work queue: at most ``max_queue`` requests admitted, ``workers`` of them computing at once.

Admission happens on the event loop before any work starts: a request beyond ``max_queue`` gets
:class:`QueueFull` (the app answers 503 with ``Retry-After``), so a burst never builds an unbounded backlog.
Admitted work runs in a thread pool (torch releases the GIL inside its kernels, and the event loop stays free
to stream), and its slot is released only when the thread is really done, so cancelled work that is still
unwinding keeps counting against the limit.
"""

from __future__ import annotations

import asyncio
import functools
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from diffsight.errors import DiffsightError
from diffsight.serve.cancel import Cancelled, Job, TimedOut

__all__ = ["QueueFull", "WorkQueue"]

T = TypeVar("T")


class QueueFull(Exception):
    """No room in the queue; ``retry_after`` is a hint in whole seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class WorkQueue:
    """Admission control plus a thread pool.

    Args:
        max_queue: requests admitted at once (running + waiting).
        workers: threads computing at once.
        timeout: each request's time limit in seconds, from admission.
    """

    def __init__(self, max_queue: int, workers: int, timeout: float) -> None:
        self.max_queue = max_queue
        self.workers = workers
        self.timeout = timeout
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="diffsight-work")
        self._lock = threading.Lock()
        self._jobs: set[Job] = set()
        self._running = 0
        self._closing = False
        self._mean_seconds = 0.5  # running mean of a job's duration, for Retry-After
        self.counts = {"completed": 0, "invalid": 0, "cancelled": 0, "timed_out": 0, "failed": 0, "rejected": 0}

    # -- admission -----------------------------------------------------------------------------------------------
    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the backlog's expected duration over the workers (1..60)."""
        with self._lock:
            backlog = len(self._jobs)
        return max(1, min(60, math.ceil(backlog * self._mean_seconds / self.workers)))

    def admit(self) -> Job:
        """A :class:`Job` for a new request, or :class:`QueueFull` when ``max_queue`` are admitted."""
        with self._lock:
            if self._closing:
                self.counts["rejected"] += 1
                raise QueueFull("the server is shutting down; retry against another instance", 5)
            if len(self._jobs) >= self.max_queue:
                self.counts["rejected"] += 1
                full = True
            else:
                full = False
                job = Job(self.timeout)
                self._jobs.add(job)
        if full:
            raise QueueFull(
                f"the server is busy ({self.max_queue} requests queued or running); retry after the "
                "Retry-After seconds",
                self.retry_after(),
            )
        return job

    def release(self, job: Job, outcome: str) -> None:
        """Free ``job``'s slot (called once, when its work has really ended, or if it never started)."""
        with self._lock:
            if job in self._jobs:
                self._jobs.discard(job)
                self.counts[outcome] = self.counts.get(outcome, 0) + 1
                if outcome == "completed":
                    seconds = time.monotonic() - job.admitted
                    self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * seconds

    # -- running -------------------------------------------------------------------------------------------------
    def _call(self, job: Job, fn: Callable[[], T]) -> T:
        outcome = "failed"
        with self._lock:
            self._running += 1
        try:
            job.check()  # it may have been cancelled or run out of time while it waited
            result = fn()
            outcome = "completed"
            return result
        except Cancelled:
            outcome = "cancelled"
            raise
        except TimedOut:
            outcome = "timed_out"
            raise
        except DiffsightError:
            outcome = "invalid"  # bad input found while working (a damaged image, ...): the client's 4xx
            raise
        finally:
            with self._lock:
                self._running -= 1
            self.release(job, outcome)

    def submit(self, job: Job, fn: Callable[..., T], *args: Any, **kwargs: Any) -> asyncio.Future[T]:
        """Run ``fn(*args, **kwargs)`` for the admitted ``job`` in the pool; an asyncio future of its result."""
        loop = asyncio.get_running_loop()
        try:
            return loop.run_in_executor(self._executor, self._call, job, functools.partial(fn, *args, **kwargs))
        except RuntimeError:  # the pool was shut down between admission and here
            self.release(job, "cancelled")
            raise Cancelled("the server is shutting down") from None

    def status(self) -> dict[str, Any]:
        """Counts for GET /v1/status."""
        with self._lock:
            return {
                "running": self._running,
                "queued": len(self._jobs) - self._running,
                "admitted": len(self._jobs),
                "max_queue": self.max_queue,
                "workers": self.workers,
                "timeout_s": self.timeout,
                **self.counts,
            }

    # -- shutdown ------------------------------------------------------------------------------------------------
    def close(self, grace: float) -> None:
        """Stop admitting, give running work ``grace`` seconds to finish, cancel the rest, and join the threads."""
        with self._lock:
            self._closing = True
        end = time.monotonic() + grace
        while time.monotonic() < end:
            with self._lock:
                if not self._jobs:
                    break
            time.sleep(0.05)
        with self._lock:
            jobs = list(self._jobs)
        for job in jobs:
            job.cancel("the server is shutting down")
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:  # jobs whose work never started (their futures were cancelled)
            for job in list(self._jobs):
                self._jobs.discard(job)
                self.counts["cancelled"] += 1
