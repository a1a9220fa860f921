"""Probe curves: a factor reader applied to x0_hat at every recorded step (xai.md 8e).

At each recorded step the denoiser's estimate of the clean sample, x0_hat, is read by a classifier of clean
samples (:mod:`diffsight.explain.factors`); the probabilities over the steps show when the estimate starts to
look like its final value. The probe's "commitment step" (xai.md 8e) is the first recorded step from which
the argmax equals the final sample's value and its probability exceeds ``threshold`` at every later step.

Caveat: at high sigma x0_hat is the posterior *mean* E[x0 | x_t], a blurry average of everything the sample
could still become, not a sample. A classifier of clean samples is miscalibrated on such averages: it can be
confidently right (or wrong) long before the factor is decided, so the probe step is an early, optimistic
estimate. Branching (:class:`~diffsight.explain.commitment.Commitment`, the U-turn protocol of xai.md 8b)
reads only clean samples and avoids this; the probe costs no network evaluation at all (the Trace holds
x0_hat), so it is the cheap first look.
"""

from __future__ import annotations

import time

import torch

from diffsight.errors import DiffsightError
from diffsight.explain.commitment import decided_summary
from diffsight.explain.explanation import Explanation
from diffsight.explain.factors import FactorReader, read_in_batches
from diffsight.trace.record import Trace

__all__ = ["ProbeCurves", "probe_decided_row"]


def probe_decided_row(probabilities: torch.Tensor, value: int, threshold: float = 0.9) -> int:
    """First row of ``probabilities`` (S, V) from which the argmax is ``value`` with probability ``> threshold``
    at every later row; -1 if the last row is not such a row."""
    p = torch.as_tensor(probabilities, dtype=torch.float64)
    ok = ((p.argmax(-1) == int(value)) & (p[:, int(value)] > threshold)).tolist()  # (S,)
    row = -1
    for i in range(len(ok) - 1, -1, -1):
        if not ok[i]:
            break
        row = i
    return row


class ProbeCurves:
    """Factor probabilities of x0_hat along the trajectory of one sample.

    Args:
        trace: the run to explain.
        reader: reads factors of clean samples (``reader_for_model(model)``, ``ComponentReader(oracle)``, ...).
        sample: which sample of the trace.
        threshold: probability above which a probe counts as decided.
        batch_size: rows per reader call.

    ``explain()`` values: ``step`` (S,) long, ``sigma`` (S,) float64, ``probabilities`` (factor -> (S, V)
    float32), ``value_names`` (factor -> list of V names), ``decided_step`` (factor -> sampler step, -1 never),
    ``decided_sigma`` (factor -> float, NaN never), ``final_value`` (factor -> the reader's value of the final
    sample).
    """

    method = "probes"

    def __init__(
        self, trace: Trace, reader: FactorReader, *, sample: int = 0, threshold: float = 0.9, batch_size: int = 256
    ) -> None:
        if not 0 <= sample < trace.batch_size:
            raise DiffsightError(f"sample must lie in 0..{trace.batch_size - 1}, got {sample}")
        if reader is None:
            raise DiffsightError(
                "probe curves need a factor reader: pass reader_for_model(model), or a ClassifierReader of your own"
            )
        if not 0.0 < threshold <= 1.0:
            raise DiffsightError(f"threshold must lie in (0, 1], got {threshold}")
        self.trace = trace
        self.reader = reader
        self.sample = int(sample)
        self.threshold = float(threshold)
        self.batch_size = int(batch_size)

    def explain(self) -> Explanation:
        t = self.trace
        began = time.perf_counter()
        x0 = t.x0_hat[:, self.sample].float()  # (S, *event)
        probs = read_in_batches(self.reader, x0, self.batch_size)  # factor -> (S, V)
        own = read_in_batches(self.reader, t.final[self.sample : self.sample + 1].float(), 1)
        step = t.tensors["step_index"].clone()
        sigma = t.tensors["sigma"].clone()
        final_value: dict[str, str] = {}
        decided_step: dict[str, int] = {}
        decided_sigma: dict[str, float] = {}
        confidence: dict[str, torch.Tensor] = {}
        for f, names in self.reader.factors.items():
            target = int(own[f][0].argmax())
            final_value[f] = names[target]
            row = probe_decided_row(probs[f], target, self.threshold)
            decided_step[f] = int(step[row]) if row >= 0 else -1
            decided_sigma[f] = float(sigma[row]) if row >= 0 else float("nan")
            confidence[f] = probs[f][:, target].to(torch.float64)  # (S,) probability of the final value
        return Explanation(
            method=self.method,
            values={
                "step": step,
                "sigma": sigma,
                "probabilities": probs,
                "value_names": {f: list(v) for f, v in self.reader.factors.items()},
                "decided_step": decided_step,
                "decided_sigma": decided_sigma,
                "final_value": final_value,
            },
            params={"sample": self.sample, "threshold": self.threshold, "reader": self.reader.name},
            diagnostics={
                "nfe": 0,
                "seconds": round(time.perf_counter() - began, 4),
                "recorded_steps": len(step),
                "num_steps": t.num_steps,
                "caveat": "x0_hat at high sigma is a blurry posterior mean: probes are miscalibrated there",
            },
            summary="probes on x0_hat: "
            + decided_summary(decided_step, decided_sigma, confidence, step, t.num_steps, final_value),
            trace_id=t.id,
        )
