"""Fréchet distance between Gaussians fitted to two feature sets (the "FD" in FID).

Heusel et al. 2017, "GANs trained by a two time-scale update rule converge to a local Nash equilibrium",
section "Fréchet Inception Distance": with (mu_a, C_a) and (mu_b, C_b) the mean and covariance of the two
feature sets,

    d^2 = ||mu_a - mu_b||^2 + Tr(C_a + C_b - 2 (C_a C_b)^{1/2}),

the squared 2-Wasserstein (Fréchet) distance between N(mu_a, C_a) and N(mu_b, C_b) (Dowson & Landau 1982).
Here the features come from our own small classifier (see classifier.py), not Inception, so the numbers are
only comparable with each other, and only at equal sample counts: FD is biased upwards at small n, so always
read it beside the real-vs-real floor at the same n.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from diffsight.errors import DiffsightError, ShapeError

__all__ = ["frechet_distance", "gaussian_statistics"]

_EPS = 1e-6


def _as_features(features: torch.Tensor | np.ndarray, what: str) -> np.ndarray:
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().double().numpy()
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2:
        raise ShapeError(f"{what} must be a (N, D) feature matrix, got shape {array.shape}")
    if array.shape[0] < 2:
        raise DiffsightError(f"{what} needs at least 2 samples to estimate a covariance, got {array.shape[0]}")
    if not np.isfinite(array).all():
        raise DiffsightError(f"{what} holds NaN or infinite values")
    return array


def gaussian_statistics(features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), unbiased covariance (D, D)) in float64 of features (N, D), N >= 2."""
    x = _as_features(features, "features")
    return x.mean(axis=0), np.cov(x, rowvar=False, ddof=1).reshape(x.shape[1], x.shape[1])


def _sqrtm_product(cov_a: np.ndarray, cov_b: np.ndarray) -> np.ndarray | None:
    """(C_a C_b)^{1/2}, or None when scipy's result is not finite."""
    import scipy.linalg  # 0.4 s to import; only needed here

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular products warn; a non-finite result is handled by the caller
        try:
            root = scipy.linalg.sqrtm(cov_a @ cov_b)
        except (np.linalg.LinAlgError, ValueError):
            return None
    root = np.asarray(root[0] if isinstance(root, tuple) else root)  # older scipy may return (root, error)
    return root if np.isfinite(root).all() else None


def frechet_distance(features_a: torch.Tensor | np.ndarray, features_b: torch.Tensor | np.ndarray) -> float:
    """Fréchet distance d^2 between Gaussians fitted to features_a (N_a, D) and features_b (N_b, D).

    Follows Heusel et al. 2017 (see the module docstring). When ``C_a C_b`` has no finite square root (a singular
    covariance, e.g. N < D), ``eps * I`` with eps = 1e-6 is added to both covariances. Imaginary parts of the
    root below 1e-3 (relative to the trace scale) are numerical noise and dropped; larger ones raise.
    Tiny negative results from rounding are clipped to 0.
    """
    mu_a, cov_a = gaussian_statistics(_as_features(features_a, "features_a"))
    mu_b, cov_b = gaussian_statistics(_as_features(features_b, "features_b"))
    if mu_a.shape != mu_b.shape:
        raise ShapeError(f"feature dimensions differ: {mu_a.shape[0]} vs {mu_b.shape[0]}")

    root = _sqrtm_product(cov_a, cov_b)
    if root is None:
        offset = _EPS * np.eye(cov_a.shape[0])
        root = _sqrtm_product(cov_a + offset, cov_b + offset)
        if root is None:
            raise DiffsightError("the Fréchet distance failed: (C_a C_b)^(1/2) is not finite even with eps * I added")
    if np.iscomplexobj(root):
        scale = max(1.0, float(np.trace(cov_a) + np.trace(cov_b)))
        largest = float(np.abs(root.imag).max())
        if largest > 1e-3 * scale:
            raise DiffsightError(f"the Fréchet distance failed: (C_a C_b)^(1/2) has imaginary parts up to {largest:g}")
        root = root.real

    diff = mu_a - mu_b
    distance = float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(root))
    return max(distance, 0.0)
