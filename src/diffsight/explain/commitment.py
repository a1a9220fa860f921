"""Commitment by branching: from which step on is a factor of the final sample decided?

The U-turn / cloning protocol (Biroli et al. 2024, arXiv 2402.18491; Sclocchi, Favero & Wyart 2025, arXiv
2402.16991; xai.md 8b): take the trajectory's state x at a recorded step s, run K continuations from there to
sigma = 0 with a *stochastic* sampler (fresh noise each), read a factor of every continuation's final sample,
and count how many agree with the trajectory's own final. With the exact reverse SDE the expected agreement is
the posterior probability P(factor = value of the final | x_s), so the curve over s rises from chance to 1 and
the step where it crosses ``threshold`` for good is the step at which the factor was decided. It needs no
classifier on noisy inputs, only one on clean samples (:mod:`diffsight.explain.factors`), which is why it is
better calibrated than probes on x0_hat (:mod:`diffsight.explain.probes`).

Known answer (xai.md 17, check 3): for a two-component Gaussian mixture the posterior is the oracle's
responsibility ``r_k(x_s, sigma_s)``, so the branching estimate must reproduce it; the decided step must fall
within one sampler step of the analytic one.

Cost: every continuation from step s spends ``num_steps - s`` sampler steps. Continuations are batched: all K
from one step, and several steps at once, up to ``batch_size`` rows per network call. A batch that mixes
starting steps runs in segments (from the earliest start to the next, where the next step's rows join, and
so on); for the single-step Markov samplers allowed here (``ddpm``, ``pc``) this is exactly the same as running
each continuation alone, with the same per-continuation noise.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from diffsight.errors import DiffsightError
from diffsight.explain.explanation import Explanation
from diffsight.explain.factors import FactorReader, read_in_batches
from diffsight.models.denoiser import Denoiser
from diffsight.models.folder import LoadedModel
from diffsight.sampling.records import NoiseFn, StepRecord
from diffsight.sampling.registry import get_sampler
from diffsight.trace.record import Trace
from diffsight.trace.run import guided_denoiser, model_of_trace

__all__ = [
    "BRANCHING_SAMPLERS",
    "DEFAULT_TOL",
    "PIXELS",
    "Commitment",
    "bootstrap_interval",
    "choose_rows",
    "continuation_seed",
    "decided_row",
    "decided_summary",
]

BRANCHING_SAMPLERS: tuple[str, ...] = ("ddpm", "pc")
"""Stochastic samplers whose steps depend only on (sigma_i, sigma_{i+1}) and the state: continuations from
different steps can then share one batch, run in segments."""

PIXELS = "pixels"
"""The factor name of the reader-free agreement (final within ``tol`` RMS distance of the trace's final)."""

DEFAULT_TOL = 0.1
"""Default RMS distance for the reader-free agreement: 5% of the range of data scaled to [-1, 1]."""

DEFAULT_ROWS = 9
"""Recorded steps branched from by default (spread over the trace, first and last included)."""


def decided_row(agreement: torch.Tensor | Sequence[float], threshold: float = 0.9) -> int:
    """First index from which ``agreement`` stays ``>= threshold`` through the end; -1 if it never does.

    This is the "commitment step" of an agreement (or probability) curve ordered from noise to data; the report
    reuses it for curves it draws.
    """
    values = [float(v) for v in torch.as_tensor(agreement, dtype=torch.float64).reshape(-1).tolist()]
    row = -1
    for i in range(len(values) - 1, -1, -1):
        if not values[i] >= threshold:  # NaN counts as below
            break
        row = i
    return row


def choose_rows(recorded: Sequence[int], steps: int | Sequence[int] | None, default: int = DEFAULT_ROWS) -> list[int]:
    """Rows of a trace's recorded steps to branch from.

    ``steps`` None: ``default`` rows spread evenly (first and last always in); an int n: n rows spread likewise;
    a sequence: these sampler step indices, each of which must be recorded.
    """
    n_rec = len(recorded)
    if n_rec == 0:
        raise DiffsightError("the trace has no recorded steps")
    if steps is None or isinstance(steps, int):
        n = default if steps is None else int(steps)
        if n < 1:
            raise DiffsightError(f"steps must be at least 1 (how many recorded steps to branch from), got {n}")
        if n == 1:
            return [0]
        picks = np.linspace(0, n_rec - 1, min(n, n_rec)).round().astype(int)
        return sorted(set(int(p) for p in picks))
    where = {int(s): row for row, s in enumerate(recorded)}
    missing = [int(s) for s in steps if int(s) not in where]
    if missing:
        raise DiffsightError(
            f"steps {missing} were not recorded in this trace; choose among the recorded steps {list(recorded)} "
            "(or record the trace with stride=1)"
        )
    rows = sorted(set(where[int(s)] for s in steps))
    if not rows:
        raise DiffsightError("steps is empty: pass at least one recorded step")
    return rows


def continuation_seed(seed: int, step: int, j: int) -> int:
    """The seed of continuation ``j`` from sampler step ``step``: independent of batching and of which other
    steps are branched from, so any one curve point can be reproduced alone."""
    return int(np.random.SeedSequence([int(seed), int(step), int(j)]).generate_state(1, dtype=np.uint64)[0] >> 1)


def bootstrap_interval(
    matches: torch.Tensor, resamples: int, generator: torch.Generator, level: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Percentile bootstrap interval of the share of True per row of ``matches`` (M, K), resampling the K
    continuations with replacement; returns (low, high), each (M,) float64 (NaN when ``resamples`` is 0)."""
    m, k = matches.shape
    if resamples <= 0 or k == 0:
        nan = torch.full((m,), float("nan"), dtype=torch.float64)
        return nan, nan.clone()
    idx = torch.randint(k, (resamples, k), generator=generator)  # (R, K)
    boot = matches.to(torch.float64)[:, idx].mean(-1)  # (M, R, K) -> (M, R)
    alpha = (1.0 - level) / 2
    q = torch.tensor([alpha, 1.0 - alpha], dtype=torch.float64)
    low, high = torch.quantile(boot, q, dim=1)  # (2, M)
    return low, high


def _row_noise(generators: list[torch.Generator]) -> NoiseFn:
    """Noise from one CPU generator per batch row, moved to the run's device (the same numbers on any device)."""

    def draw(step: int, k: int, like: torch.Tensor) -> torch.Tensor:
        z = torch.cat([torch.randn((1, *like.shape[1:]), generator=g, dtype=torch.float32) for g in generators])
        return z.to(like.device, like.dtype)

    return draw


class Commitment:
    """When was each factor of one sample decided? Agreement of branched continuations with the final.

    Args:
        trace: the run to explain.
        denoiser: the model it was recorded with (a LoadedModel or a denoiser); None loads it from the trace.
        reader: reads factors of clean samples (:mod:`diffsight.explain.factors`); None compares pixels: a
            continuation agrees when its final lies within ``tol`` RMS distance of the trace's final (factor
            ``"pixels"``). ``reader_for_model(model)`` gives the shipped reader of ``shapes`` and ``digits``.
        steps: which recorded steps to branch from: None (9 spread over the trace, first and last included),
            a count, or the sampler step indices themselves.
        k: continuations per step.
        sampler: a stochastic sampler, ``"ddpm"`` (ancestral, the default) or ``"pc"``; the continuations use the
            trace's own schedule from the branching step on (so a finer trace gives a closer approximation of
            the reverse SDE).
        seed: seeds every continuation (:func:`continuation_seed`) and the bootstrap.
        threshold: agreement that counts as decided.
        sample: which sample of the trace.
        batch_size: rows per network call.
        bootstrap: bootstrap resamples of the K continuations for the 95% intervals (0: no intervals, NaN).
        tol: the RMS distance of the reader-free agreement (:data:`DEFAULT_TOL`, for data in [-1, 1]).
        sampler_options: passed to the sampler (e.g. ``{"snr": 0.1}`` for ``pc``).
        decode: maps finals (N, *event) to what is read or compared (latent models: the decoder, so factors and
            the pixel distance are those of the decoded images; :mod:`diffsight.explain.latent`).

    ``explain()`` values: ``step`` (M,) long, ``sigma`` (M,) float64, ``agreement``, ``ci_low``, ``ci_high``
    (factor -> (M,) float64), ``value_shares`` (factor -> (M, V): the share of continuations ending at each
    value; reader only), ``distance`` ((M, K) RMS distances; pixels only), ``decided_step`` (factor -> sampler
    step, -1 never), ``decided_sigma`` (factor -> float, NaN never), ``final_value`` (factor -> value name).
    """

    method = "commitment"

    def __init__(
        self,
        trace: Trace,
        denoiser: LoadedModel | Denoiser | None = None,
        *,
        reader: FactorReader | None = None,
        steps: int | Sequence[int] | None = None,
        k: int = 16,
        sampler: str = "ddpm",
        seed: int = 0,
        threshold: float = 0.9,
        sample: int = 0,
        batch_size: int = 256,
        bootstrap: int = 1000,
        tol: float = DEFAULT_TOL,
        sampler_options: dict[str, Any] | None = None,
        decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if not 0 <= sample < trace.batch_size:
            raise DiffsightError(f"sample must lie in 0..{trace.batch_size - 1}, got {sample}")
        if k < 1:
            raise DiffsightError(f"k (continuations per step) must be at least 1, got {k}")
        if sampler not in BRANCHING_SAMPLERS:
            raise DiffsightError(
                f"branching needs a stochastic sampler whose continuations draw fresh noise; got {sampler!r}, "
                f"choose one of {list(BRANCHING_SAMPLERS)}"
            )
        if not 0.0 < threshold <= 1.0:
            raise DiffsightError(f"threshold must lie in (0, 1], got {threshold}")
        if batch_size < 1:
            raise DiffsightError(f"batch_size must be at least 1, got {batch_size}")
        if bootstrap < 0:
            raise DiffsightError(f"bootstrap must be non-negative, got {bootstrap}")
        if tol <= 0:
            raise DiffsightError(f"tol must be positive, got {tol}")
        if float(trace.sigmas[-1]) != 0.0:
            raise DiffsightError("the trace's schedule does not end at sigma = 0: continuations would stay noisy")
        self.trace = trace
        if denoiser is None:
            denoiser = model_of_trace(trace)
        self.denoiser: Denoiser = denoiser.denoiser if isinstance(denoiser, LoadedModel) else denoiser
        self.reader = reader
        self.rows = choose_rows(trace.step_index, steps)
        self.k = int(k)
        self.sampler = sampler
        self.seed = int(seed)
        self.threshold = float(threshold)
        self.sample = int(sample)
        self.batch_size = int(batch_size)
        self.bootstrap = int(bootstrap)
        self.tol = float(tol)
        self.sampler_options = dict(sampler_options or {})
        self.decode = decode

    # -- the condition the trace ran with ---------------------------------------------------------------------
    def _cond(self) -> int | None:
        labels = self.trace.labels
        if labels is not None:
            return int(labels[self.sample])
        model = self.trace.meta.get("model") or {}
        if int(model.get("num_classes") or 0) > 0 and self.trace.meta.get("null_class") is not None:
            return int(self.trace.meta["null_class"])  # unconditional through the null class, as recorded
        return None

    # -- continuations ----------------------------------------------------------------------------------------
    def continuations(self) -> tuple[torch.Tensor, dict[str, int]]:
        """Run the K continuations from every chosen step: finals (M, K, *event) float32 on the CPU, and
        counts ``{"nfe": per-sample network evaluations, "calls": batched sampler steps}``."""
        t = self.trace
        steps = [t.step_index[r] for r in self.rows]
        sigmas = t.sigmas
        n_steps = t.num_steps
        run = get_sampler(self.sampler)
        meta = t.meta
        denoiser = guided_denoiser(self.denoiser, float(meta.get("guidance", 1.0)), meta.get("null_class"))
        param = next(iter(getattr(self.denoiser, "parameters", lambda: iter(()))()), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None else torch.float32
        cond_value = self._cond()
        entries = [(m, j) for m in range(len(steps)) for j in range(self.k)]  # sorted by start step
        finals = torch.empty((len(steps), self.k, *t.event_shape), dtype=torch.float32)  # (M, K, *event)
        counts = {"nfe": 0, "calls": 0}

        def count(record: StepRecord) -> None:
            counts["nfe"] += record.nfe * record.x.shape[0]
            counts["calls"] += 1

        with torch.no_grad():
            for lo in range(0, len(entries), self.batch_size):
                batch = entries[lo : lo + self.batch_size]
                starts = sorted({steps[m] for m, _ in batch})
                x: torch.Tensor | None = None
                gens: list[torch.Generator] = []
                order: list[tuple[int, int]] = []
                for i, s in enumerate(starts):
                    joining = [(m, j) for m, j in batch if steps[m] == s]
                    state = t.x[self.rows[joining[0][0]], self.sample].to(device, dtype)  # event
                    new = state.unsqueeze(0).expand(len(joining), *state.shape).clone()  # (n, *event)
                    x = new if x is None else torch.cat([x, new])
                    gens += [torch.Generator().manual_seed(continuation_seed(self.seed, s, j)) for _, j in joining]
                    order += joining
                    end = starts[i + 1] if i + 1 < len(starts) else n_steps
                    cond = None
                    if cond_value is not None:
                        cond = torch.full((x.shape[0],), cond_value, dtype=torch.long, device=device)
                    x = run(
                        denoiser,
                        x,
                        sigmas[: end + 1],  # segment to the next start (or to sigma = 0)
                        cond=cond,
                        noise=_row_noise(gens),
                        start=s,
                        callback=count,
                        **self.sampler_options,
                    )
                out = torch.as_tensor(x).detach().to("cpu", torch.float32)
                for row, (m, j) in enumerate(order):
                    finals[m, j] = out[row]
        return finals, counts

    # -- the verb ---------------------------------------------------------------------------------------------
    def explain(self) -> Explanation:
        t = self.trace
        began = time.perf_counter()
        finals, counts = self.continuations()  # (M, K, *event)
        m_rows, k = finals.shape[:2]
        own = t.final[self.sample].float()  # event
        if self.decode is not None:  # latent models: read and compare the decoded images
            with torch.no_grad():
                images = self.decode(finals.reshape(m_rows * k, *finals.shape[2:])).detach().to("cpu", torch.float32)
                own = self.decode(own.unsqueeze(0)).detach().to("cpu", torch.float32)[0]  # (C, H, W)
            finals = images.reshape(m_rows, k, *images.shape[1:])  # (M, K, C, H, W)
        matches: dict[str, torch.Tensor] = {}  # factor -> (M, K) bool
        final_value: dict[str, str] = {}
        extra: dict[str, Any] = {}
        if self.reader is not None:
            flat = finals.reshape(m_rows * k, *finals.shape[2:])  # (M*K, *event)
            probs = read_in_batches(self.reader, flat, self.batch_size)
            ref = read_in_batches(self.reader, own.unsqueeze(0), 1)
            shares: dict[str, torch.Tensor] = {}
            for f, names in self.reader.factors.items():
                chosen = probs[f].argmax(-1).reshape(m_rows, k)  # (M, K)
                target = int(ref[f][0].argmax())
                matches[f] = chosen == target
                final_value[f] = names[target]
                onehot = torch.nn.functional.one_hot(chosen, len(names)).to(torch.float64)  # (M, K, V)
                shares[f] = onehot.mean(1)  # (M, V)
            extra["value_shares"] = shares
        else:
            diff = finals - own.unsqueeze(0).unsqueeze(0)  # (M, K, *event)
            distance = diff.reshape(m_rows, k, -1).pow(2).mean(-1).sqrt()  # (M, K)
            matches[PIXELS] = distance <= self.tol
            final_value[PIXELS] = "the trace's final"
            extra["distance"] = distance
        step = t.tensors["step_index"][self.rows].clone()
        sigma = t.tensors["sigma"][self.rows].clone()
        boot_gen = torch.Generator().manual_seed(self.seed)
        agreement, ci_low, ci_high = {}, {}, {}
        decided_step: dict[str, int] = {}
        decided_sigma: dict[str, float] = {}
        for f, match in matches.items():
            agreement[f] = match.to(torch.float64).mean(1)  # (M,)
            ci_low[f], ci_high[f] = bootstrap_interval(match, self.bootstrap, boot_gen)
            row = decided_row(agreement[f], self.threshold)
            decided_step[f] = int(step[row]) if row >= 0 else -1
            decided_sigma[f] = float(sigma[row]) if row >= 0 else float("nan")
        seconds = time.perf_counter() - began
        return Explanation(
            method=self.method,
            values={
                "step": step,
                "sigma": sigma,
                "agreement": agreement,
                "ci_low": ci_low,
                "ci_high": ci_high,
                **extra,
                "decided_step": decided_step,
                "decided_sigma": decided_sigma,
                "final_value": final_value,
            },
            params={
                "sample": self.sample,
                "steps": [int(s) for s in step.tolist()],
                "k": self.k,
                "sampler": self.sampler,
                "sampler_options": self.sampler_options,
                "seed": self.seed,
                "threshold": self.threshold,
                "batch_size": self.batch_size,
                "bootstrap": self.bootstrap,
                "reader": None if self.reader is None else self.reader.name,
                "tol": self.tol if self.reader is None else None,
                "decoded": self.decode is not None,
            },
            diagnostics={
                "nfe": counts["nfe"],
                "batched_calls": counts["calls"],
                "seconds": round(seconds, 4),
                "k": self.k,
                "sampler": self.sampler,
                "num_steps": t.num_steps,
            },
            summary=decided_summary(decided_step, decided_sigma, agreement, step, t.num_steps, final_value),
            trace_id=t.id,
        )


def decided_summary(
    decided_step: dict[str, int],
    decided_sigma: dict[str, float],
    curve_end: dict[str, torch.Tensor],
    step: torch.Tensor,
    num_steps: int,
    final_value: dict[str, str] | None = None,
) -> str:
    """One line naming when each factor was decided, in the order they were decided.

    For example ``decided: colour = red by step 4 of 20 (sigma 6.1), shape = circle by step 9 of 20 (sigma 1.2);
    not decided: size (0.62 at step 19)``. ``curve_end``: factor -> curve whose last value is quoted for the
    undecided ones. Shared by :class:`Commitment` and :class:`~diffsight.explain.probes.ProbeCurves`.
    """
    decided = sorted((s, f) for f, s in decided_step.items() if s >= 0)
    parts = []
    for s, f in decided:
        value = f" = {final_value[f]}" if final_value and f != PIXELS else ""
        parts.append(f"{f}{value} by step {s} of {num_steps} (sigma {decided_sigma[f]:.3g})")
    text = "decided: " + ", ".join(parts) if parts else "no factor decided"
    undecided = [f for f, s in decided_step.items() if s < 0]
    if undecided:
        last = int(step[-1]) if len(step) else -1
        text += "; not decided: " + ", ".join(f"{f} ({float(curve_end[f][-1]):.2f} at step {last})" for f in undecided)
    return text
