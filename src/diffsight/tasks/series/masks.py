"""Self-supervised training masks: hide part of the observed values so the model learns to fill them.

CSDI (Tashiro et al. 2021, sec. 4.3 and App. B.2) trains on the observed values only: for each window it picks
conditioning values among the observed ones and uses the rest as imputation targets. The patterns here:

- ``random``: each observed value is hidden with probability r ~ U(0.05, 0.5) (one r per window);
- ``block``: one to three gaps of 1..L/2 steps, in all features or in one, plus sparse random hiding;
- ``forecast``: the last h ~ U{1..L/2} steps are hidden in every feature (a forecast of the gap at the end);
- ``historical``: the missing pattern of another training window is hidden (CSDI's "historical" strategy).

Returns the conditioning mask (the targets are ``observed & ~cond``) and which windows use the ``forecast`` pattern
(their training must not see values after the window either).
"""

from __future__ import annotations

import torch

__all__ = ["PATTERNS", "training_mask"]

PATTERNS: dict[str, float] = {"random": 0.4, "block": 0.25, "forecast": 0.15, "historical": 0.2}
"""Each pattern and the probability that a training window uses it."""

RANDOM_RATE: tuple[float, float] = (0.05, 0.5)
"""The ``random`` pattern hides each observed value with probability r ~ U(RANDOM_RATE). At imputation time every
observed value is visible, so training windows should not be much sparser than the series: CSDI's U(0, 1) trains
mostly at densities the model never meets (on macrodata with 50% hidden, U(0.05, 0.95) left the model 10% worse
than straight lines, U(0.05, 0.5) 2% better; BENCHMARKS.md)."""


def _uniform(generator: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=generator))


def _randint(generator: torch.Generator, lo: int, hi: int) -> int:
    """An integer in [lo, hi] inclusive."""
    return int(torch.randint(lo, hi + 1, (), generator=generator))


def training_mask(
    observed: torch.Tensor, other: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Conditioning mask (B, K, L) bool for windows whose observed values are ``observed`` (B, K, L), and a (B,)
    bool that is True for the windows hiding their end (``forecast``).

    ``other`` (B, K, L) holds the observed masks of other windows, used by the ``historical`` pattern.
    """
    batch, features, length = observed.shape
    names = list(PATTERNS)
    probs = torch.tensor([PATTERNS[n] for n in names])
    choice = torch.multinomial(probs, batch, replacement=True, generator=generator)  # (B,)
    hide = torch.zeros_like(observed)
    forecasting = torch.zeros(batch, dtype=torch.bool)
    for b in range(batch):
        pattern = names[int(choice[b])]
        if pattern == "historical" and other[b].all():
            pattern = "random"
        if pattern == "random":
            hide[b] = torch.rand(features, length, generator=generator) < _uniform(generator, *RANDOM_RATE)
        elif pattern == "block":
            hide[b] = torch.rand(features, length, generator=generator) < _uniform(generator, 0.0, 0.3)
            for _ in range(_randint(generator, 1, 3)):
                size = _randint(generator, 1, max(1, length // 2))
                begin = _randint(generator, 0, length - size)
                rows = (
                    slice(None) if features == 1 or _uniform(generator) < 0.5 else _randint(generator, 0, features - 1)
                )
                hide[b, rows, begin : begin + size] = True
        elif pattern == "forecast":
            hide[b, :, length - _randint(generator, 1, max(1, length // 2)) :] = True
            forecasting[b] = True
        else:
            hide[b] = ~other[b]
    return observed & ~hide, forecasting
