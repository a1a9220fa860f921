"""The narrative of an explanation report: sentences computed from the explainers' numbers, nothing else.

Each sentence names its source (branching, probes, spectrum, guidance, attribution) so a reader can check it
against the figure it summarises. Nothing here is hand-written per model: change the numbers and the text
changes with them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from diffsight.explain.explanation import Explanation

__all__ = ["decided_order", "narrate"]


def _num(value: Any) -> float:
    return float(value.item() if hasattr(value, "item") else value)


def decided_order(expl: Explanation) -> list[tuple[str, int, float]]:
    """(factor, decided step, decided sigma) of a commitment or probe explanation, earliest first; undecided
    factors (step -1) are left out."""
    steps: Mapping[str, Any] = expl.values.get("decided_step", {})
    sigmas: Mapping[str, Any] = expl.values.get("decided_sigma", {})
    sigma_of_row = expl.values.get("sigma")
    step_of_row = expl.values.get("step")
    out = []
    for factor, step in steps.items():
        step = int(_num(step))
        if step < 0:
            continue
        if factor in sigmas:
            sigma = _num(sigmas[factor])
        elif sigma_of_row is not None and step_of_row is not None:
            rows = [i for i, s in enumerate(step_of_row.tolist()) if int(s) == step]
            sigma = float(sigma_of_row[rows[0]]) if rows else float("nan")
        else:
            sigma = float("nan")
        out.append((factor, step, sigma))
    return sorted(out, key=lambda item: (item[1], item[0]))


def _decisions(expl: Explanation, num_steps: int, how: str) -> str | None:
    order = decided_order(expl)
    final = expl.values.get("final_value", {})
    undecided = [f for f, s in expl.values.get("decided_step", {}).items() if int(_num(s)) < 0]
    if not order and not undecided:
        return None
    parts = []
    for i, (factor, step, sigma) in enumerate(order):
        value = f" ({final[factor]})" if factor in final else ""
        of = f" of {num_steps}" if i == 0 else ""
        parts.append(f"{factor}{value} by step {step}{of}, sigma {sigma:.3g}")
    text = f"{how}: " + "; ".join(parts) if parts else f"{how}: nothing was settled"
    if undecided:
        text += f"; still open at the last step examined: {', '.join(undecided)}"
    return text + "."


def narrate(explanations: Mapping[str, Explanation], *, num_steps: int) -> list[str]:
    """Sentences for a report, in reading order: what was decided when (branching first, the most direct
    evidence), what the probes saw, the spectrum, where the condition acted, and what the attribution found."""
    lines: list[str] = []
    if "commitment" in explanations:
        c = explanations["commitment"]
        k = c.params.get("k", c.diagnostics.get("k", "?"))
        how = f"Decided (agreement of {k} fresh-noise continuations >= {c.params.get('threshold', 0.9)})"
        line = _decisions(c, num_steps, how)
        if line:
            lines.append(line)
    if "probes" in explanations:
        line = _decisions(explanations["probes"], num_steps, "The factor probes read the final value off x0_hat")
        if line:
            lines.append(
                line[:-1] + " (a probe reads a blurry posterior mean at high sigma, so early readings are weaker "
                "evidence than branching)."
            )
    if "spectral" in explanations:
        lines.append(explanations["spectral"].summary.rstrip(".") + ".")
    if "filmstrip" in explanations:
        lines.append(explanations["filmstrip"].summary.rstrip(".") + ".")
    if "guidance" in explanations:
        lines.append(explanations["guidance"].summary.rstrip(".") + ".")
    if "likelihood" in explanations:
        lines.append(explanations["likelihood"].summary.rstrip(".") + ".")
    if "attribution" in explanations:
        a = explanations["attribution"]
        error = a.diagnostics.get("completeness_error")
        check = (
            f" (completeness error {_num(error):.2g})" if error is not None and "completeness" not in a.summary else ""
        )
        lines.append(a.summary.rstrip(".") + check + ".")
    return lines
