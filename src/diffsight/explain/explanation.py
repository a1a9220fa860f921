"""The one result type of every explainer (DESIGN.md, contract 5).

An :class:`Explanation` holds named ``values`` (tensors shaped like the data or like the time axis, or plain
numbers), the ``method`` that made them, the ``params`` it ran with, ``diagnostics`` (standard errors,
completeness errors, network evaluations, seconds) and a one-line human ``summary``. Reports, the viewer and
the API render any Explanation through :meth:`Explanation.to_json` or :meth:`Explanation._repr_html_`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

__all__ = ["Explainer", "Explanation", "jsonable"]


def jsonable(value: Any) -> Any:
    """``value`` with tensors and numpy arrays turned into (nested) lists and non-finite floats into None."""
    if isinstance(value, torch.Tensor):
        return jsonable(value.detach().cpu().tolist())
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


@dataclass(frozen=True, eq=False)
class Explanation:
    """What an explainer found.

    Attributes:
        method: the explainer's registry name (``"filmstrip"``, ``"commitment"``, ...).
        values: named results; tensors keep their shapes (documented by each explainer).
        params: the options the explainer ran with (JSON-ready).
        diagnostics: how far to trust the values: standard errors, completeness error, NFE, seconds, ...
        summary: one sentence a person can read, computed from the values.
        trace_id: the Trace it explains, when it explains one.
    """

    method: str
    values: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    trace_id: str | None = None

    def to_json(self, *, include_values: bool = True) -> dict[str, Any]:
        """A JSON-ready dict (tensors as nested lists)."""
        out: dict[str, Any] = {
            "method": self.method,
            "summary": self.summary,
            "trace_id": self.trace_id,
            "params": jsonable(self.params),
            "diagnostics": jsonable(self.diagnostics),
        }
        if include_values:
            out["values"] = jsonable(self.values)
        return out

    def dumps(self) -> str:
        return json.dumps(self.to_json())

    def __repr__(self) -> str:
        shapes = ", ".join(
            f"{k}{list(v.shape)}" if isinstance(v, (torch.Tensor, np.ndarray)) else k for k, v in self.values.items()
        )
        return f"<Explanation {self.method}: {self.summary} [{shapes}]>"

    def _repr_html_(self) -> str:
        from diffsight.explain.html import explanation_html

        return explanation_html(self)


class Explainer(Protocol):
    """Constructed with what it explains (a Trace, a model, options); one verb."""

    def explain(self) -> Explanation: ...
