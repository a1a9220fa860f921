"""The Trace: the record of one sampling run (DESIGN.md, contract 4).

A Trace holds what the run was (model identity, sampler, sigmas, seed, conditions, guidance) in ``meta`` and
what happened in ``tensors``:

- ``x_init``       (B, *event)     the starting state x at sigmas[0], full precision;
- ``final``        (B, *event)     the sample the run returned, full precision;
- ``x``            (S, B, *event)  the state entering each recorded step (the trace's dtype);
- ``x0_hat``       (S, B, *event)  the denoiser's estimate of the clean sample at each recorded step;
- ``step_index``   (S,)            which sampler steps were recorded (every ``stride``-th, and always the last);
- ``sigma``, ``sigma_next`` (S,)   the step's noise levels;
- ``noise.<i>.<k>`` (B, *event)    every standard-normal draw of step i, full precision, for every step: a
  stochastic run can then be replayed exactly whatever the stride.

The content hash (SHA-256 over the canonical JSON of ``meta`` and every tensor's dtype, shape and bytes)
identifies a Trace; its first 16 hex digits are the trace id that reports and the service use.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import torch

from diffsight.errors import DiffsightError

__all__ = ["TRACE_FORMAT", "TRACE_FORMAT_VERSION", "Trace", "content_hash"]

TRACE_FORMAT = "diffsight-trace"
TRACE_FORMAT_VERSION = 1

_VOLATILE_META = (
    "created",
    "hash",
    "sampling_seconds",
)  # not part of the content: the same run recorded twice has one hash


def content_hash(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of ``meta`` (canonical JSON, volatile keys left out) and of every tensor, in name order."""
    h = hashlib.sha256()
    stable = {k: v for k, v in meta.items() if k not in _VOLATILE_META}
    h.update(json.dumps(stable, sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclass(frozen=True, eq=False)
class Trace:
    """One recorded sampling run; build it with :func:`diffsight.trace.record_trace`, not by hand."""

    meta: dict[str, Any]
    tensors: dict[str, torch.Tensor] = field(repr=False)

    def __post_init__(self) -> None:
        missing = [
            k for k in ("x_init", "final", "x", "x0_hat", "step_index", "sigma", "sigma_next") if k not in self.tensors
        ]
        if missing:
            raise DiffsightError(f"a trace needs the tensors {missing}")
        if "hash" not in self.meta:
            self.meta["hash"] = content_hash(self.meta, self.tensors)

    # -- identity --------------------------------------------------------------------------------------------
    @property
    def hash(self) -> str:
        return str(self.meta["hash"])

    @property
    def id(self) -> str:
        """The first 16 hex digits of the content hash."""
        return self.hash[:16]

    def verify(self) -> None:
        """Raise if the tensors or metadata no longer match the recorded content hash."""
        actual = content_hash(self.meta, self.tensors)
        if actual != self.hash:
            raise DiffsightError(
                f"trace {self.id}: content hash mismatch (recorded {self.hash[:16]}, now {actual[:16]})"
            )

    # -- what was run ----------------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return int(self.tensors["final"].shape[0])

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.tensors["final"].shape[1:])

    @property
    def sigmas(self) -> torch.Tensor:
        """The sampler's full sigma array (descending, ending in 0), float64."""
        return torch.tensor(self.meta["sigmas"], dtype=torch.float64)

    @property
    def num_steps(self) -> int:
        """Sampler steps of the run (``len(sigmas) - 1``), recorded or not."""
        return len(self.meta["sigmas"]) - 1

    @property
    def step_index(self) -> list[int]:
        """The sampler step of each recorded row of ``x`` and ``x0_hat``."""
        return [int(i) for i in self.tensors["step_index"].tolist()]

    @property
    def labels(self) -> torch.Tensor | None:
        value = self.meta.get("labels")
        return None if value is None else torch.tensor(value, dtype=torch.long)

    @property
    def x(self) -> torch.Tensor:
        return self.tensors["x"]

    @property
    def x0_hat(self) -> torch.Tensor:
        return self.tensors["x0_hat"]

    @property
    def final(self) -> torch.Tensor:
        return self.tensors["final"]

    @property
    def is_image(self) -> bool:
        return len(self.event_shape) == 3

    def noise(self) -> dict[int, list[torch.Tensor]]:
        """Every recorded draw: ``{step: [draw 0, draw 1, ...]}`` (for :func:`diffsight.sampling.replay_noise`)."""
        out: dict[int, list[tuple[int, torch.Tensor]]] = {}
        for name, t in self.tensors.items():
            if name.startswith("noise."):
                _, step, k = name.split(".")
                out.setdefault(int(step), []).append((int(k), t))
        return {step: [t for _, t in sorted(draws, key=lambda d: d[0])] for step, draws in out.items()}

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    def describe(self) -> str:
        m = self.meta
        model = m.get("model", {}).get("name") or "a denoiser"
        cond = "" if m.get("labels") is None else f", class {m.get('class_names') or m['labels']}"
        guide = "" if float(m.get("guidance", 1.0)) == 1.0 else f", guidance {m['guidance']}"
        return (
            f"trace {self.id}: {model}, {m['sampler']} {self.num_steps} steps ({m.get('nfe', '?')} NFE), seed "
            f"{m.get('seed')}{cond}{guide}; {len(self.step_index)} steps recorded, {self.nbytes() / 1e6:.1f} MB"
        )

    def __repr__(self) -> str:
        return f"<Trace {self.describe()}>"

    def _repr_html_(self) -> str:
        from diffsight.trace.html import trace_html

        return trace_html(self)
