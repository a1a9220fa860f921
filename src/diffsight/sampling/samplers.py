"""Samplers: pure functions ``sample_x(denoiser, x, sigmas, *, cond, generator, callback, ...) -> x``.

All of them integrate the reverse process in the sigma parametrisation of Karras et al. (2022), EDM:
``x = x0 + sigma * eps``, probability-flow ODE ``dx/dsigma = (x - D(x, sigma)) / sigma`` (EDM eq. 3 with
s(t) = 1, sigma(t) = t). A variance-preserving model is sampled in the same coordinates through its adapter
(:mod:`diffsight.models.discrete`), so each sampler here is written once.

Conventions shared by every sampler

- ``x`` holds the state at ``sigmas[start]`` (``start`` defaults to 0), shape ``(B, *event)``.
- ``sigmas`` is strictly descending and non-negative; a step to ``sigma_next == 0`` returns the denoised
  estimate, so a schedule ending in 0 produces clean samples.
- State lives in loop locals: no hidden step counter. Multistep solvers can restart mid-run from the
  denoised estimates of earlier steps (``x0_history``).
- Randomness comes only from ``generator`` (one, or one per sample) or from ``noise`` (a :data:`NoiseFn`,
  for example recorded noise to replay a run). Deterministic samplers draw nothing.
- Nothing here turns gradients off: wrap a call in ``torch.no_grad()`` yourself when you do not need them.
- After every step, ``callback`` receives a frozen :class:`~diffsight.sampling.records.StepRecord`.

Notation: ``s`` = sigma_i, ``sn`` = sigma_{i+1}, ``D`` = denoiser, ``d = (x - D(x, s)) / s`` (the ODE slope),
``lambda = -log(sigma)`` (log-SNR), ``h = lambda_{i+1} - lambda_i = log(s / sn)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from diffsight.errors import DiffsightError, ShapeError
from diffsight.models.denoiser import Denoiser
from diffsight.sampling.records import Callback, GeneratorArg, NoiseFn, StepRecord, generator_noise
from diffsight.sampling.schedules import check_sigmas

__all__ = [
    "sample_ddim",
    "sample_ddpm",
    "sample_dpmpp_2m",
    "sample_dpmpp_3m",
    "sample_euler",
    "sample_heun",
    "sample_pc",
]


# --- shared plumbing ------------------------------------------------------------------------------------------


def _setup(
    x: torch.Tensor, sigmas: torch.Tensor, start: int, generator: GeneratorArg, noise: NoiseFn | None
) -> tuple[list[float], NoiseFn]:
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"x must be a torch.Tensor of shape (batch, ...), got {type(x).__name__}")
    if x.ndim < 2:
        raise ShapeError(
            f"x must have a batch dimension first, shape (batch, ...); got shape {tuple(x.shape)}. "
            "Use x[None] for a single sample."
        )
    if not x.is_floating_point():
        raise ShapeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    s = check_sigmas(sigmas)
    if not isinstance(start, int) or not 0 <= start < s.numel() - 1:
        raise DiffsightError(f"start must be an integer step index in [0, {s.numel() - 2}], got {start!r}")
    if noise is not None and generator is not None:
        raise DiffsightError("pass either generator= or noise=, not both")
    return s.tolist(), noise if noise is not None else generator_noise(generator)


def _denoise(denoiser: Denoiser, x: torch.Tensor, sigma: float, cond: Any) -> torch.Tensor:
    sigma_b = x.new_full((x.shape[0],), sigma)  # (B,)
    out = denoiser(x, sigma_b, cond)
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ShapeError(f"the denoiser returned {got} for input of shape {tuple(x.shape)}; it must match x")
    return out


def _draw(noise: NoiseFn, step: int, k: int, like: torch.Tensor) -> torch.Tensor:
    z = noise(step, k, like)
    if z.shape != like.shape:
        raise ShapeError(f"noise for step {step} has shape {tuple(z.shape)}, expected {tuple(like.shape)}")
    return z


def _history(x0_history: Sequence[torch.Tensor], keep: int, x: torch.Tensor) -> list[torch.Tensor]:
    hist = list(x0_history)[-keep:] if keep else []
    for h in hist:
        if h.shape != x.shape:
            raise ShapeError(f"x0_history entries must be shaped like x {tuple(x.shape)}, got {tuple(h.shape)}")
    return hist


def _ancestral_split(s: float, sn: float, eta: float) -> tuple[float, float]:
    """(sigma_down, sigma_up) of a DDIM(eta) step from s to sn; eta = 1 is the DDPM posterior.

    The DDPM posterior q(x_{t-1} | x_t, x0) (Ho et al. 2020, eq. 7) in sigma coordinates has mean
    ``x0 + (sn^2 / s^2)(x - x0)`` and std ``sn * sqrt(s^2 - sn^2) / s``; DDIM (Song et al. 2021, eq. 16)
    scales that std by eta and keeps the marginal: ``sigma_down = sqrt(sn^2 - sigma_up^2)``.
    """
    if sn == 0.0 or eta == 0.0:
        return sn, 0.0
    sigma_up = min(eta * sn * math.sqrt(s**2 - sn**2) / s, sn)
    return math.sqrt(sn**2 - sigma_up**2), sigma_up


# --- first-order and ancestral -------------------------------------------------------------------------------


def sample_ddim(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    cond: Any = None,
    generator: GeneratorArg = None,
    callback: Callback | None = None,
    start: int = 0,
    noise: NoiseFn | None = None,
    eta: float = 0.0,
) -> torch.Tensor:
    """DDIM with stochasticity eta (Song, Meng & Ermon 2021, eq. 12 and 16).

    In sigma coordinates one step is ``x_next = x0 + sigma_down * (x - x0) / s + sigma_up * z`` with
    ``x0 = D(x, s)`` and (sigma_down, sigma_up) from :func:`_ancestral_split`. eta = 0 is the deterministic
    DDIM, identical to an Euler step of the probability-flow ODE; eta = 1 is DDPM ancestral sampling.
    """
    if not 0.0 <= eta <= 1.0:
        raise DiffsightError(f"eta must lie in [0, 1], got {eta}")
    return _ancestral_loop("ddim", denoiser, x, sigmas, cond, generator, callback, start, noise, eta)


def sample_ddpm(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    cond: Any = None,
    generator: GeneratorArg = None,
    callback: Callback | None = None,
    start: int = 0,
    noise: NoiseFn | None = None,
) -> torch.Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2, with the "fixed small" posterior variance).

    Each step draws x_next from q(x_next | x, x0 = D(x, s)); on a VP model's own timesteps this is exactly
    the DDPM reverse chain, in sigma coordinates (see :func:`_ancestral_split`).
    """
    return _ancestral_loop("ddpm", denoiser, x, sigmas, cond, generator, callback, start, noise, 1.0)


def _ancestral_loop(
    name: str,
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    cond: Any,
    generator: GeneratorArg,
    callback: Callback | None,
    start: int,
    noise: NoiseFn | None,
    eta: float,
) -> torch.Tensor:
    s_list, draw = _setup(x, sigmas, start, generator, noise)
    for i in range(start, len(s_list) - 1):
        s, sn = s_list[i], s_list[i + 1]
        x0 = _denoise(denoiser, x, s, cond)
        sigma_down, sigma_up = _ancestral_split(s, sn, eta)
        x_next = x0 + (sigma_down / s) * (x - x0)  # 1. deterministic part, toward sigma_down
        drawn: tuple[torch.Tensor, ...] = ()
        if sigma_up > 0:
            z = _draw(draw, i, 0, x)
            x_next = x_next + sigma_up * z  # 2. fresh noise back up to sigma_next
            drawn = (z,)
        if callback is not None:
            callback(StepRecord(i, s, sn, x, x0, x_next, drawn, 1, name))
        x = x_next
    return x


def _churn(
    x: torch.Tensor,
    s: float,
    n_steps: int,
    draw: NoiseFn,
    i: int,
    s_churn: float,
    s_tmin: float,
    s_tmax: float,
    s_noise: float,
) -> tuple[torch.Tensor, float, tuple[torch.Tensor, ...]]:
    """EDM Algorithm 2, lines 4-6: raise the noise level to s_hat = s (1 + gamma) with fresh noise."""
    gamma = min(s_churn / n_steps, math.sqrt(2) - 1) if s_tmin <= s <= s_tmax else 0.0
    if gamma <= 0:
        return x, s, ()
    s_hat = s * (1 + gamma)
    z = _draw(draw, i, 0, x)
    return x + math.sqrt(s_hat**2 - s**2) * s_noise * z, s_hat, (z,)


def _check_churn(s_churn: float, s_noise: float) -> None:
    if s_churn < 0 or s_noise <= 0:
        raise DiffsightError(f"need s_churn >= 0 and s_noise > 0, got s_churn={s_churn}, s_noise={s_noise}")


def sample_euler(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    cond: Any = None,
    generator: GeneratorArg = None,
    callback: Callback | None = None,
    start: int = 0,
    noise: NoiseFn | None = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
) -> torch.Tensor:
    """Euler's method on the probability-flow ODE (EDM, Algorithm 2 without the correction), optional churn.

    ``x_next = x + (sn - s) * d`` with ``d = (x - D(x, s)) / s``. First order: halving the step size halves
    the global error. Without churn it is deterministic and equals DDIM with eta = 0.
    """
    _check_churn(s_churn, s_noise)
    s_list, draw = _setup(x, sigmas, start, generator, noise)
    n_steps = len(s_list) - 1
    for i in range(start, n_steps):
        s, sn = s_list[i], s_list[i + 1]
        x_hat, s_hat, drawn = _churn(x, s, n_steps, draw, i, s_churn, s_tmin, s_tmax, s_noise)
        x0 = _denoise(denoiser, x_hat, s_hat, cond)
        d = (x_hat - x0) / s_hat
        x_next = x_hat + (sn - s_hat) * d
        if callback is not None:
            callback(StepRecord(i, s, sn, x, x0, x_next, drawn, 1, "euler"))
        x = x_next
    return x


def sample_heun(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    cond: Any = None,
    generator: GeneratorArg = None,
    callback: Callback | None = None,
    start: int = 0,
    noise: NoiseFn | None = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
) -> torch.Tensor:
    """Heun's 2nd-order method with stochastic churn, EDM Algorithm 2 (Karras et al. 2022).

    1. churn: ``s_hat = s (1 + gamma)``, ``x_hat = x + sqrt(s_hat^2 - s^2) S_noise z`` (gamma = 0 by default);
    2. Euler predictor: ``x' = x_hat + (sn - s_hat) d``, ``d = (x_hat - D(x_hat, s_hat)) / s_hat``;
    3. trapezoidal corrector when ``sn > 0``: ``x_next = x_hat + (sn - s_hat)(d + d') / 2``.

    2 network evaluations per step, 1 on the last step to sigma = 0 (NFE = 2N - 1).
    """
    _check_churn(s_churn, s_noise)
    s_list, draw = _setup(x, sigmas, start, generator, noise)
    n_steps = len(s_list) - 1
    for i in range(start, n_steps):
        s, sn = s_list[i], s_list[i + 1]
        x_hat, s_hat, drawn = _churn(x, s, n_steps, draw, i, s_churn, s_tmin, s_tmax, s_noise)
        x0 = _denoise(denoiser, x_hat, s_hat, cond)
        d = (x_hat - x0) / s_hat
        x_next = x_hat + (sn - s_hat) * d
        nfe = 1
        if sn > 0:
            d_next = (x_next - _denoise(denoiser, x_next, sn, cond)) / sn
            x_next = x_hat + (sn - s_hat) * (0.5 * d + 0.5 * d_next)
            nfe = 2
        if callback is not None:
            callback(StepRecord(i, s, sn, x, x0, x_next, drawn, nfe, "heun"))
        x = x_next
    return x


# --- multistep exponential integrators ------------------------------------------------------------------------


def sample_dpmpp_2m(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    cond: Any = None,
    generator: GeneratorArg = None,
    callback: Callback | None = None,
    start: int = 0,
    noise: NoiseFn | None = None,
    x0_history: Sequence[torch.Tensor] = (),
) -> torch.Tensor:
    """DPM-Solver++(2M), Lu et al. (2022b), Algorithm 2, in data-prediction form.

    Exact in the linear part: ``x_next = (sn / s) x - expm1(-h) * D_i`` with
    ``D_i = (1 + 1/(2r)) x0_i - 1/(2r) x0_{i-1}``, ``r = h_{i-1} / h_i``. The first step (no history) is
    first order (DDIM); a step to sigma = 0 returns x0. ``x0_history``: the denoised estimate of the step
    before ``start``, to restart mid-run exactly. Deterministic; ``generator`` and ``noise`` are unused.
    """
    s_list, _ = _setup(x, sigmas, start, generator, noise)
    hist = _history(x0_history, 1, x)
    x0_prev = hist[-1] if hist else None
    h_prev = math.log(s_list[start - 1] / s_list[start]) if (x0_prev is not None and start > 0) else None
    for i in range(start, len(s_list) - 1):
        s, sn = s_list[i], s_list[i + 1]
        x0 = _denoise(denoiser, x, s, cond)
        if sn == 0:
            x_next, h = x0, None
        else:
            h = math.log(s / sn)
            if x0_prev is None or h_prev is None:
                d_i = x0
            else:
                r = h_prev / h
                d_i = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
            x_next = (sn / s) * x - math.expm1(-h) * d_i
        if callback is not None:
            callback(StepRecord(i, s, sn, x, x0, x_next, (), 1, "dpmpp_2m"))
        x, x0_prev, h_prev = x_next, x0, h
    return x


def sample_dpmpp_3m(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    cond: Any = None,
    generator: GeneratorArg = None,
    callback: Callback | None = None,
    start: int = 0,
    noise: NoiseFn | None = None,
    x0_history: Sequence[torch.Tensor] = (),
    lower_order_final: bool = True,
) -> torch.Tensor:
    """DPM-Solver++(3M): third-order multistep exponential integrator (Lu et al. 2022a, Algorithm 4 / App. B,
    in the data-prediction form of Lu et al. 2022b).

    With ``m_k`` the last three denoised estimates and ``r0 = h_{i-1}/h``, ``r1 = h_{i-2}/h``::

        D1_0 = (m0 - m1) / r0,  D1_1 = (m1 - m2) / r1
        D1 = D1_0 + r0 / (r0 + r1) * (D1_0 - D1_1),  D2 = (D1_0 - D1_1) / (r0 + r1)
        x_next = (sn/s) x - phi1 m0 + (phi1/h + 1) D1 - ((phi1 + h)/h^2 - 1/2) D2,   phi1 = expm1(-h)

    Warm-up uses orders 1 and 2. With ``lower_order_final`` and fewer than 15 steps, the step before the
    final one to sigma = 0 drops to order 2, which keeps very short schedules stable (Lu et al. 2022b,
    sec. 5). ``x0_history``: the estimates of the (up to two) steps before ``start``.
    """
    s_list, _ = _setup(x, sigmas, start, generator, noise)
    n_steps = len(s_list) - 1
    hist = _history(x0_history, 2, x)
    lambdas = [-math.log(v) if v > 0 else math.inf for v in s_list]
    ms: list[torch.Tensor] = list(hist)  # denoised estimates, oldest first
    ls: list[float] = lambdas[start - len(hist) : start] if len(hist) <= start else []
    if len(ls) != len(ms):
        raise DiffsightError(f"x0_history has {len(hist)} entries but only {start} steps precede start={start}")
    short_final = lower_order_final and s_list[-1] == 0 and n_steps < 15
    for i in range(start, n_steps):
        s, sn = s_list[i], s_list[i + 1]
        x0 = _denoise(denoiser, x, s, cond)
        ms, ls = [*ms[-2:], x0], [*ls[-2:], lambdas[i]]
        if sn == 0:
            x_next = x0
        else:
            h = lambdas[i + 1] - lambdas[i]
            phi1 = math.expm1(-h)
            order = min(len(ms), 2 if (short_final and i == n_steps - 2) else 3)
            if order == 1:
                x_next = (sn / s) * x - phi1 * x0
            elif order == 2:
                r0 = (ls[-1] - ls[-2]) / h
                d_i = (1 + 1 / (2 * r0)) * ms[-1] - (1 / (2 * r0)) * ms[-2]
                x_next = (sn / s) * x - phi1 * d_i
            else:
                m2, m1, m0 = ms[-3], ms[-2], ms[-1]
                r0 = (ls[-1] - ls[-2]) / h
                r1 = (ls[-2] - ls[-3]) / h
                d1_0, d1_1 = (m0 - m1) / r0, (m1 - m2) / r1
                d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                x_next = (sn / s) * x - phi1 * m0 + (phi1 / h + 1) * d1 - ((phi1 + h) / h**2 - 0.5) * d2
        if callback is not None:
            callback(StepRecord(i, s, sn, x, x0, x_next, (), 1, "dpmpp_3m"))
        x = x_next
    return x


# --- score-based predictor-corrector --------------------------------------------------------------------------


def sample_pc(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    cond: Any = None,
    generator: GeneratorArg = None,
    callback: Callback | None = None,
    start: int = 0,
    noise: NoiseFn | None = None,
    snr: float = 0.16,
    n_corrector: int = 1,
    step_rule: str = "sigma",
) -> torch.Tensor:
    """Predictor-corrector sampling with a Langevin corrector (Song et al. 2021, Algorithms 2 and 4).

    At each level: ``n_corrector`` Langevin steps ``x <- x + e * score + sqrt(2 e) z`` with
    ``score = (D(x, s) - x) / s^2``, then a reverse-diffusion (ancestral) predictor step to ``sn``.
    NFE = (n_corrector + 1) per step. The Langevin step size ``e`` follows ``step_rule``:

    - ``"sigma"`` (default): ``e = 2 (snr * s)^2``, the annealed rule of Song & Ermon (2019, Algorithm 1),
      which equals the rule below when the noise dominates (|score| ~ |z| / s) and never blows up;
    - ``"norm"``: ``e = 2 (snr * |z| / |score|)^2`` per sample (Song et al. 2021, Algorithm 4). It adapts to
      the data scale, but in few dimensions |score| can be near 0 and the step explodes. The reference code
      averages the norms over the batch; here they are per sample so that samples stay independent.
    """
    if snr <= 0 or not isinstance(n_corrector, int) or n_corrector < 0:
        raise DiffsightError(f"need snr > 0 and an integer n_corrector >= 0, got snr={snr}, n_corrector={n_corrector}")
    if step_rule not in ("sigma", "norm"):
        raise DiffsightError(f"step_rule must be 'sigma' or 'norm', got {step_rule!r}")
    s_list, draw = _setup(x, sigmas, start, generator, noise)
    reduce_dims = tuple(range(1, x.ndim))
    view = (-1,) + (1,) * (x.ndim - 1)  # (B,) -> (B, 1, ..., 1)
    for i in range(start, len(s_list) - 1):
        s, sn = s_list[i], s_list[i + 1]
        x_in, drawn = x, []
        for k in range(n_corrector):  # 1. Langevin corrector at level s
            score = (_denoise(denoiser, x, s, cond) - x) / s**2
            z = _draw(draw, i, k, x)
            if step_rule == "sigma":
                e: torch.Tensor | float = 2 * (snr * s) ** 2
                x = x + e * score + math.sqrt(2 * e) * z
            else:
                z_norm = z.square().sum(reduce_dims).sqrt()
                g_norm = score.square().sum(reduce_dims).sqrt().clamp_min(torch.finfo(x.dtype).tiny)
                e = (2 * (snr * z_norm / g_norm) ** 2).reshape(view)
                x = x + e * score + (2 * e).sqrt() * z
            drawn.append(z)
        x0 = _denoise(denoiser, x, s, cond)  # 2. reverse-diffusion predictor to sn
        sigma_down, sigma_up = _ancestral_split(s, sn, 1.0)
        x_next = x0 + (sigma_down / s) * (x - x0)
        if sigma_up > 0:
            z = _draw(draw, i, n_corrector, x)
            x_next = x_next + sigma_up * z
            drawn.append(z)
        if callback is not None:
            callback(StepRecord(i, s, sn, x_in, x0, x_next, tuple(drawn), n_corrector + 1, "pc"))
        x = x_next
    return x
