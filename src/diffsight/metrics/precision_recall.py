"""Improved precision and recall (Kynkäänniemi et al. 2019): fidelity and coverage as two separate numbers.

Kynkäänniemi, Karras, Laine, Lehtinen, Aila, "Improved Precision and Recall Metric for Assessing Generative
Models", NeurIPS 2019, section 2. Each set of feature vectors Phi approximates its manifold by a union of
balls, one per point, whose radius is the distance to the point's k-th nearest neighbour in the same set
(the point itself excluded):

    f(phi, Phi) = 1  if  ||phi - phi'|| <= ||phi' - NN_k(phi', Phi)||  for at least one phi' in Phi,  else 0

    precision(Phi_r, Phi_g) = 1/|Phi_g| sum_{phi_g} f(phi_g, Phi_r)    share of fakes on the real manifold
    recall(Phi_r, Phi_g)    = 1/|Phi_r| sum_{phi_r} f(phi_r, Phi_g)    share of reals on the fake manifold

k = 3 as in the paper. Pairwise distances are computed in row chunks (chunk x N at a time, float64), so
20,000 x 20,000 sets fit in a few hundred MB. This is our own implementation from the paper's definitions.
"""

from __future__ import annotations

import numpy as np
import torch

from diffsight.errors import DiffsightError, ShapeError

__all__ = ["knn_radii", "manifold_coverage", "precision_recall"]


def _as_points(points: torch.Tensor | np.ndarray, what: str) -> torch.Tensor:
    x = torch.as_tensor(points.detach().cpu() if isinstance(points, torch.Tensor) else np.asarray(points))
    x = x.to(torch.float64)
    if x.ndim != 2:
        raise ShapeError(f"{what} must be a (N, D) feature matrix, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise DiffsightError(f"{what} holds NaN or infinite values")
    return x


def _squared_distances(a: torch.Tensor, b: torch.Tensor, b_sq: torch.Tensor) -> torch.Tensor:
    """||a_i - b_j||^2 (A, B) from a (A, D), b (B, D) and the precomputed squared norms of b (B,)."""
    d2 = (a * a).sum(1, keepdim=True) + b_sq[None, :] - 2.0 * (a @ b.T)  # (A, B)
    return d2.clamp_min_(0.0)


def knn_radii(points: torch.Tensor | np.ndarray, k: int = 3, chunk_size: int = 1024) -> torch.Tensor:
    """Distance (N,) from each point to its k-th nearest neighbour among the *other* points (N > k needed).

    The point itself is the nearest at distance 0, so this is the (k + 1)-th smallest distance in its row.
    """
    x = _as_points(points, "points")
    if k < 1 or x.shape[0] <= k:
        raise DiffsightError(f"k-NN radii need k >= 1 and more than k points; got k={k} with {x.shape[0]} points")
    x_sq = (x * x).sum(1)  # (N,)
    radii = torch.empty(x.shape[0], dtype=torch.float64)
    for start in range(0, x.shape[0], chunk_size):
        d2 = _squared_distances(x[start : start + chunk_size], x, x_sq)  # (chunk, N)
        radii[start : start + chunk_size] = d2.topk(k + 1, dim=1, largest=False).values[:, k]
    return radii.sqrt()


def manifold_coverage(
    queries: torch.Tensor | np.ndarray,
    support: torch.Tensor | np.ndarray,
    radii: torch.Tensor,
    chunk_size: int = 1024,
) -> float:
    """Share of queries (Q, D) inside at least one ball B(support_j, radii_j), support (S, D), radii (S,)."""
    q, s = _as_points(queries, "queries"), _as_points(support, "support")
    if q.shape[1] != s.shape[1] or radii.shape != (s.shape[0],):
        raise ShapeError(f"queries {tuple(q.shape)}, support {tuple(s.shape)} and radii {tuple(radii.shape)} differ")
    s_sq, r_sq = (s * s).sum(1), radii.to(torch.float64) ** 2  # (S,), (S,)
    inside = 0
    for start in range(0, q.shape[0], chunk_size):
        d2 = _squared_distances(q[start : start + chunk_size], s, s_sq)  # (chunk, S)
        inside += int((d2 <= r_sq[None, :]).any(dim=1).sum())
    return inside / q.shape[0]


def precision_recall(
    real: torch.Tensor | np.ndarray,
    fake: torch.Tensor | np.ndarray,
    k: int = 3,
    chunk_size: int = 1024,
) -> tuple[float, float]:
    """(precision, recall) of fake features (M, D) against real features (N, D), Kynkäänniemi et al. 2019.

    Precision: share of fake points within the k-NN radius of some real point (fidelity).
    Recall: share of real points within the k-NN radius of some fake point (coverage). Both need N, M > k.
    """
    r, f = _as_points(real, "real"), _as_points(fake, "fake")
    if r.shape[1] != f.shape[1]:
        raise ShapeError(f"real and fake features differ in dimension: {r.shape[1]} vs {f.shape[1]}")
    if chunk_size < 1:
        raise DiffsightError(f"chunk_size must be >= 1, got {chunk_size}")
    precision = manifold_coverage(f, r, knn_radii(r, k, chunk_size), chunk_size)
    recall = manifold_coverage(r, f, knn_radii(f, k, chunk_size), chunk_size)
    return precision, recall
