"""K posterior samples per measurement -> mean and per-pixel standard deviation (shared/research/xai.md, 11).

:func:`reconstruct` is the one verb of the image solvers: it repeats each measurement K times in one batch,
runs the chosen solver once, and returns a :class:`Reconstruction` (samples, mean, std, cost). The solvers:

| name | module | operators | exact for a Gaussian prior? |
|---|---|---|---|
| ``denoise`` | :mod:`~diffsight.tasks.denoise` | identity + Gaussian noise | yes, as steps grow (chi-square tested) |
| ``repaint`` | :mod:`~diffsight.tasks.repaint` | mask | no (approaches it with more resampling) |
| ``projection`` | :mod:`~diffsight.tasks.projection` | any linear | no |
| ``dps`` | :mod:`~diffsight.tasks.dps` | any differentiable | no |

The std of approximate solvers is a spread, not a calibrated uncertainty: calibrate it on held-out pairs with
:mod:`diffsight.tasks.conformal` before reading it as an interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from diffsight.errors import DiffsightError, unknown_name
from diffsight.models.denoiser import Denoiser
from diffsight.tasks.denoise import denoise_posterior
from diffsight.tasks.dps import dps
from diffsight.tasks.operators import IdentityOperator, LinearOperator, MaskOperator
from diffsight.tasks.projection import projection_solve
from diffsight.tasks.repaint import repaint
from diffsight.tasks.stepping import CountingDenoiser

__all__ = ["SOLVERS", "Reconstruction", "reconstruct"]


def _denoise(denoiser: Denoiser, operator: LinearOperator, y: torch.Tensor, **kw: Any) -> torch.Tensor:
    if not isinstance(operator, IdentityOperator):
        raise DiffsightError(f"the 'denoise' solver needs an IdentityOperator, got {type(operator).__name__}")
    return denoise_posterior(denoiser, y, operator.noise_sigma, **kw)


def _repaint(denoiser: Denoiser, operator: LinearOperator, y: torch.Tensor, **kw: Any) -> torch.Tensor:
    if not isinstance(operator, MaskOperator):
        raise DiffsightError(f"the 'repaint' solver needs a MaskOperator, got {type(operator).__name__}")
    return repaint(denoiser, operator, y, **kw)


Solver = Callable[..., torch.Tensor]
SOLVERS: dict[str, Solver] = {
    "denoise": _denoise,
    "repaint": _repaint,
    "projection": projection_solve,
    "dps": dps,
}
"""Every image solver by name: ``solver(denoiser, operator, y, *, steps, sampler, cond, generator, ...)``."""


@dataclass(frozen=True, eq=False)
class Reconstruction:
    """K posterior samples of each of B measured images.

    Attributes:
        samples: (K, B, *event) posterior samples.
        mean: (B, *event) sample mean, the reconstruction.
        std: (B, *event) per-pixel sample standard deviation (unbiased; zeros when K = 1).
        method: solver name.
        nfe: network evaluations per sample (batched calls of the denoiser; DPS adds one backward each).
        seconds: wall time of the whole call.
    """

    samples: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    method: str
    nfe: int
    seconds: float


def reconstruct(
    denoiser: Denoiser,
    operator: LinearOperator,
    y: torch.Tensor,
    *,
    method: str = "projection",
    samples: int = 8,
    generator: torch.Generator | None = None,
    cond: Any = None,
    **options: Any,
) -> Reconstruction:
    """Draw ``samples`` posterior samples for every measurement in ``y`` (B, *measurement_shape).

    ``options`` go to the solver (``steps``, ``sampler``, ``zeta``, ``jump_length``, ...).
    """
    if method not in SOLVERS:
        raise unknown_name("reconstruction method", method, list(SOLVERS))
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise DiffsightError(f"samples must be a positive integer, got {samples!r}")
    b = operator.A_T(y).shape[0]  # validates y against the operator
    y_rep = y.repeat(samples, *([1] * (y.ndim - 1)))  # (K*B, *m), sample k of image j at k*B + j
    if cond is not None:
        cond = torch.as_tensor(cond).repeat(samples)
    counter = CountingDenoiser(denoiser)
    start = time.perf_counter()
    out = SOLVERS[method](counter, operator, y_rep, cond=cond, generator=generator, **options)
    seconds = time.perf_counter() - start
    xs = out.reshape(samples, b, *operator.event_shape)  # (K*B, *event) -> (K, B, *event)
    std = xs.std(0) if samples > 1 else torch.zeros_like(xs[0])
    return Reconstruction(xs, xs.mean(0), std, method, counter.calls, seconds)
