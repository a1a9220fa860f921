"""Class labels for networks with a null class (classifier-free guidance, Ho & Salimans 2022)."""

from __future__ import annotations

from typing import Any

import torch

from diffsight.errors import DiffsightError

__all__ = ["class_labels"]


def class_labels(cond: Any, batch: int, null_class: int | None, device: torch.device) -> torch.Tensor | None:
    """Validated int64 labels (batch,) for a network whose null class is ``null_class`` (None: unconditional).

    ``cond=None`` means "no condition": the null class for a conditional network, nothing for an unconditional one.
    """
    if null_class is None:
        if cond is not None:
            raise DiffsightError("this model is unconditional: it takes no class label")
        return None
    if cond is None:
        return torch.full((batch,), null_class, dtype=torch.long, device=device)
    labels = torch.as_tensor(cond, device=device).long().reshape(-1)
    if labels.shape[0] != batch:
        raise DiffsightError(f"need one class label per sample ({batch}), got {labels.shape[0]}")
    if int(labels.min()) < 0 or int(labels.max()) > null_class:
        raise DiffsightError(f"class labels must lie in 0..{null_class - 1} (or {null_class} for none)")
    return labels
