"""Exact conversions between what a network can predict: eps, v, x0 and the score.

Variance-preserving notation (Ho et al. 2020; Salimans & Ho 2022, sec. 4 and App. D):
``x_t = alpha * x0 + sigma * eps`` with ``alpha^2 + sigma^2 = 1`` for VP (any alpha > 0, sigma > 0 works
here), ``v = alpha * eps - sigma * x0``, ``score = grad log p(x_t) = -eps / sigma`` (Tweedie: the
posterior means of eps and x0 give the exact score). In diffsight's sigma parametrisation take alpha = 1.

Every function is elementwise; ``alpha`` and ``sigma`` may be Python floats or tensors that broadcast
against ``x_t`` (for per-sample values of shape (B,), reshape to (B, 1, ..., 1) first:
:func:`per_sample`).
"""

from __future__ import annotations

from typing import Literal

import torch

from diffsight.errors import unknown_name

__all__ = [
    "Prediction",
    "convert",
    "eps_to_x0",
    "per_sample",
    "score_to_x0",
    "v_to_x0",
    "x0_to_eps",
    "x0_to_score",
    "x0_to_v",
]

Prediction = Literal["eps", "v", "x0", "score"]
_NAMES = ("eps", "v", "x0", "score")
_ALIASES = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}

Scalar = torch.Tensor | float


def per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape per-sample values (B,) to (B, 1, ..., 1) so they broadcast against ``like`` (B, *event)."""
    return values.reshape((-1,) + (1,) * (like.ndim - 1))


def eps_to_x0(x_t: torch.Tensor, eps: torch.Tensor, alpha: Scalar, sigma: Scalar) -> torch.Tensor:
    """x0 = (x_t - sigma * eps) / alpha."""
    return (x_t - sigma * eps) / alpha


def x0_to_eps(x_t: torch.Tensor, x0: torch.Tensor, alpha: Scalar, sigma: Scalar) -> torch.Tensor:
    """eps = (x_t - alpha * x0) / sigma."""
    return (x_t - alpha * x0) / sigma


def v_to_x0(x_t: torch.Tensor, v: torch.Tensor, alpha: Scalar, sigma: Scalar) -> torch.Tensor:
    """x0 = (alpha * x_t - sigma * v) / (alpha^2 + sigma^2) (Salimans & Ho 2022, App. D, for any alpha, sigma)."""
    return (alpha * x_t - sigma * v) / (alpha**2 + sigma**2)


def x0_to_v(x_t: torch.Tensor, x0: torch.Tensor, alpha: Scalar, sigma: Scalar) -> torch.Tensor:
    """v = alpha * eps - sigma * x0, with eps from :func:`x0_to_eps`."""
    return alpha * x0_to_eps(x_t, x0, alpha, sigma) - sigma * x0


def x0_to_score(x_t: torch.Tensor, x0: torch.Tensor, alpha: Scalar, sigma: Scalar) -> torch.Tensor:
    """score = (alpha * x0 - x_t) / sigma^2 (Tweedie's formula, Efron 2011)."""
    return (alpha * x0 - x_t) / sigma**2


def score_to_x0(x_t: torch.Tensor, score: torch.Tensor, alpha: Scalar, sigma: Scalar) -> torch.Tensor:
    """x0 = (x_t + sigma^2 * score) / alpha."""
    return (x_t + sigma**2 * score) / alpha


def canonical(name: str) -> str:
    """``eps``/``v``/``x0``/``score`` for a name or one of diffusers' aliases (epsilon, v_prediction, sample)."""
    key = _ALIASES.get(name, name)
    if key not in _NAMES:
        raise unknown_name("prediction type", name, [*_NAMES, *_ALIASES])
    return key


_TO_X0 = {
    "eps": eps_to_x0,
    "v": v_to_x0,
    "x0": lambda x_t, p, alpha, sigma: p,
    "score": score_to_x0,
}
_FROM_X0 = {
    "eps": x0_to_eps,
    "v": x0_to_v,
    "x0": lambda x_t, x0, alpha, sigma: x0,
    "score": x0_to_score,
}


def convert(
    pred: torch.Tensor, source: str, target: str, x_t: torch.Tensor, alpha: Scalar, sigma: Scalar
) -> torch.Tensor:
    """Convert a prediction from ``source`` to ``target`` (each one of eps, v, x0, score) at (x_t, alpha, sigma)."""
    src, dst = canonical(source), canonical(target)
    x0 = _TO_X0[src](x_t, pred, alpha, sigma)
    return _FROM_X0[dst](x_t, x0, alpha, sigma)
