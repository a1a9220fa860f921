"""Filmstrip: the state x and the predicted clean sample x0_hat at every recorded step, with change maps.

diffusers' pipelines discard x0_hat; the Trace keeps it, so one can watch the estimate of the final sample
sharpen from the posterior mean (blurry, at high sigma) to the sample (xai.md, section 2 and table row 1).
Per step: ``x0_change`` is the RMS change of x0_hat since the previous recorded step, ``distance_to_final`` the
RMS distance of x0_hat to the final sample, and ``change`` the per-pixel size of the change (L2 over channels).
"""

from __future__ import annotations

import torch

from diffsight.errors import DiffsightError
from diffsight.explain.explanation import Explanation
from diffsight.trace.record import Trace

__all__ = ["Filmstrip", "settled_step"]


def settled_step(distance: torch.Tensor, fraction: float = 0.1) -> int:
    """First row from which ``distance`` stays at or below ``fraction`` of its first value (-1: never)."""
    limit = float(distance[0]) * fraction
    below = (distance <= limit).tolist()
    for i in range(len(below)):
        if all(below[i:]):
            return i
    return -1


class Filmstrip:
    """x, x0_hat, change maps and per-step scalars of one sample of a Trace."""

    method = "filmstrip"

    def __init__(self, trace: Trace, *, sample: int = 0) -> None:
        if not 0 <= sample < trace.batch_size:
            raise DiffsightError(f"sample must lie in 0..{trace.batch_size - 1}, got {sample}")
        self.trace = trace
        self.sample = sample

    def explain(self) -> Explanation:
        t = self.trace
        x = t.x[:, self.sample].float()  # (S, *event)
        x0 = t.x0_hat[:, self.sample].float()  # (S, *event)
        final = t.final[self.sample].float()  # event
        flat = x0.reshape(x0.shape[0], -1)  # (S, D)
        delta = torch.diff(x0, dim=0, prepend=x0[:1])  # (S, *event), first row zero
        x0_change = delta.reshape(len(delta), -1).pow(2).mean(1).sqrt()
        distance = (flat - final.reshape(1, -1)).pow(2).mean(1).sqrt()
        change = delta.pow(2).sum(1).sqrt() if t.is_image else delta.abs()  # (S, H, W) or (S, D)
        steps = t.tensors["step_index"]
        sigma = t.tensors["sigma"]
        biggest = int(x0_change[1:].argmax()) + 1 if len(x0_change) > 1 else 0
        settled = settled_step(distance)
        n = t.num_steps
        summary = (
            f"x0_hat changed most entering step {int(steps[biggest])} of {n} (sigma {float(sigma[biggest]):.3g})"
            + (
                f"; within 10% of its first distance to the final sample from step {int(steps[settled])} "
                f"(sigma {float(sigma[settled]):.3g})"
                if settled >= 0
                else ""
            )
        )
        return Explanation(
            method=self.method,
            values={
                "step": steps.clone(),
                "sigma": sigma.clone(),
                "x": x,
                "x0_hat": x0,
                "final": final,
                "change": change,
                "x0_change": x0_change,
                "distance_to_final": distance,
            },
            params={"sample": self.sample},
            diagnostics={"recorded_steps": len(steps), "num_steps": n, "stride": t.meta.get("stride", 1)},
            summary=summary,
            trace_id=t.id,
        )
