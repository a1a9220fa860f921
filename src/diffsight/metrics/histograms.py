"""Factor histograms and the total variation distance between them.

For a categorical factor with K values, the histogram is the vector of relative frequencies p (K,), and

    TV(p, q) = 1/2 sum_k |p_k - q_k|  in [0, 1],

the largest difference in probability that the two distributions give to any set of values (Levin, Peres &
Wilmer, "Markov Chains and Mixing Times", Prop. 4.2). TV 0.3 means at least 30% of the samples would have to
change value to match the reference frequencies.
"""

from __future__ import annotations

import numpy as np
import torch

from diffsight.errors import DiffsightError, ShapeError

__all__ = ["histogram", "total_variation"]


def histogram(values: torch.Tensor | np.ndarray, n_values: int) -> np.ndarray:
    """Relative frequencies (n_values,) float64 of integer values (N,) in [0, n_values); they sum to 1."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    v = np.asarray(values)
    if v.ndim != 1 or v.size == 0:
        raise ShapeError(f"histogram needs a non-empty 1-D array of integer values, got shape {v.shape}")
    if not np.issubdtype(v.dtype, np.integer):
        raise DiffsightError(f"histogram needs integer values (class indices), got dtype {v.dtype}")
    if n_values < 1 or v.min() < 0 or v.max() >= n_values:
        raise DiffsightError(f"values must lie in [0, {n_values}); got min {v.min()}, max {v.max()}")
    return np.bincount(v, minlength=n_values).astype(np.float64) / v.size


def total_variation(p: np.ndarray | torch.Tensor, q: np.ndarray | torch.Tensor) -> float:
    """Total variation distance 1/2 ||p - q||_1 between two histograms of the same length."""
    a = np.asarray(p.detach().cpu() if isinstance(p, torch.Tensor) else p, dtype=np.float64)
    b = np.asarray(q.detach().cpu() if isinstance(q, torch.Tensor) else q, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ShapeError(f"histograms must be 1-D and of equal length, got {a.shape} and {b.shape}")
    return 0.5 * float(np.abs(a - b).sum())
