from __future__ import annotations

import torch
from torch import nn

from diffsight.training.ema import EMA


def test_ema_follows_the_warmed_up_decay_exactly() -> None:
    model = nn.Linear(3, 2)
    ema = EMA(model, decay=0.9)
    expected = [p.detach().clone() for p in model.parameters()]
    for step in range(30):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * (step + 1))
        ema.update(model, step)
        d = min(0.9, (1 + step) / (10 + step))
        expected = [d * e + (1 - d) * p.detach() for e, p in zip(expected, model.parameters(), strict=True)]
    for e, p in zip(expected, ema.model.parameters(), strict=True):
        torch.testing.assert_close(p, e)
    assert ema.decay_at(0) == 0.1 and ema.decay_at(10_000) == 0.9


def test_ema_copy_is_independent_and_frozen() -> None:
    model = nn.Linear(2, 2)
    ema = EMA(model, decay=0.99)
    assert all(not p.requires_grad for p in ema.model.parameters())
    with torch.no_grad():
        model.weight.fill_(5.0)
    assert not torch.equal(ema.model.weight, model.weight)
