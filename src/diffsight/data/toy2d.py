"""Seeded 2-D toy data: swiss roll, two moons, eight Gaussians and a checkerboard.

These are the four densities that FFJORD (Grathwohl et al. 2019, "FFJORD: Free-form Continuous Dynamics for
Scalable Reversible Generative Models", ICLR; ``lib/toy_data.py`` of rtqichen/ffjord) made the standard test
bed for continuous-time generative models, reimplemented here in torch so that every draw comes from a
``torch.Generator`` and no scikit-learn is needed. Each generator has the signature

    f(n, *, generator=None, dtype=torch.float32) -> Tensor (n, 2)

and returns data centred near the origin with a per-coordinate standard deviation of about 1 (each dataset is
scaled by one isotropic factor, computed in closed form below, so that its shape is not distorted). At unit
scale a Karras schedule with ``sigma_max`` of a few tens fully covers the data.

Randomness: all draws are made in float64 from ``generator`` (or the global generator when it is None) and
cast to ``dtype`` at the end, so the same generator state gives the same points in every dtype.

``eight_gaussians`` draws from :func:`eight_gaussians_mixture`, so the exact denoiser, score and density of
that dataset are available through :class:`~diffsight.oracles.GaussianMixtureOracle`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from diffsight.errors import DiffsightError, unknown_name
from diffsight.oracles.mixture import GaussianMixtureOracle

__all__ = [
    "EIGHT_GAUSSIANS_RADIUS",
    "EIGHT_GAUSSIANS_STD",
    "TOY2D",
    "checkerboard",
    "eight_gaussians",
    "eight_gaussians_means",
    "eight_gaussians_mixture",
    "make_toy2d",
    "moons",
    "swiss_roll",
]

Toy2DFn = Callable[..., torch.Tensor]

# FFJORD's eight Gaussians sit on a circle of radius 4 with component std 0.5 (ratio 1 : 8). Keeping that
# ratio, the per-coordinate variance R^2 / 2 + s^2 is 1 when R = 1 / sqrt(1/2 + 1/64).
EIGHT_GAUSSIANS_RADIUS: float = 1.0 / math.sqrt(0.5 + 1.0 / 64.0)
"""Radius of the circle that holds the eight means (about 1.393)."""
EIGHT_GAUSSIANS_STD: float = EIGHT_GAUSSIANS_RADIUS / 8.0
"""Default standard deviation of each component (about 0.174)."""


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DiffsightError(f"n (the number of points) must be a positive integer, got {n!r}")
    return n


def _uniform(n: int, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, generator=generator, dtype=torch.float64)  # (n,)


def _normal(shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=torch.float64)


# --- swiss roll -----------------------------------------------------------------------------------------------


def swiss_roll(
    n: int, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32, noise: float = 1.0
) -> torch.Tensor:
    """A 2-D swiss roll (spiral): scikit-learn's ``make_swiss_roll`` seen from above, as in FFJORD.

    1. ``t = 1.5 pi (1 + 2u)``, u ~ U(0, 1), so t runs over [1.5 pi, 4.5 pi] (one and a half turns);
    2. ``x = (t cos t, t sin t) + noise * z``, z ~ N(0, I) (``noise`` in these raw units; FFJORD uses 1.0);
    3. centre by the exact mean ``(2, 2 / (3 pi))`` and divide by the exact per-coordinate std,
       ``sqrt((E[t^2] - |mean|^2) / 2 + noise^2)`` with ``E[t^2] = 9.75 pi^2``.
    """
    n = _check_n(n)
    if noise < 0:
        raise DiffsightError(f"noise must be non-negative, got {noise}")
    t = 1.5 * math.pi * (1 + 2 * _uniform(n, generator))  # (n,)
    x = torch.stack([t * torch.cos(t), t * torch.sin(t)], 1)  # (n, 2)
    x = x + noise * _normal((n, 2), generator)
    mean = torch.tensor([2.0, 2.0 / (3.0 * math.pi)], dtype=torch.float64)
    scale = math.sqrt((9.75 * math.pi**2 - float(mean.square().sum())) / 2 + noise**2)
    return ((x - mean) / scale).to(dtype)


# --- two moons ------------------------------------------------------------------------------------------------


def moons(
    n: int, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32, noise: float = 0.1
) -> torch.Tensor:
    """Two interleaving half circles, after scikit-learn's ``make_moons`` (FFJORD uses noise 0.1).

    scikit-learn places the points on an even grid of angles; here each point draws its moon (fair coin) and
    its angle a ~ U(0, pi), so the points are i.i.d.:

    - upper moon: ``(cos a, sin a)``;  lower moon: ``(1 - cos a, 1/2 - sin a)``;
    - plus ``noise * z``, z ~ N(0, I), then centred by the exact mean ``(1/2, 1/4)`` and divided by the exact
      per-coordinate std ``sqrt((3/4 + 9/16 - 1/pi) / 2 + noise^2)``.
    """
    n = _check_n(n)
    if noise < 0:
        raise DiffsightError(f"noise must be non-negative, got {noise}")
    upper = _uniform(n, generator) < 0.5  # (n,)
    a = math.pi * _uniform(n, generator)  # (n,)
    top = torch.stack([torch.cos(a), torch.sin(a)], 1)  # (n, 2)
    bottom = torch.stack([1 - torch.cos(a), 0.5 - torch.sin(a)], 1)  # (n, 2)
    x = torch.where(upper[:, None], top, bottom) + noise * _normal((n, 2), generator)
    mean = torch.tensor([0.5, 0.25], dtype=torch.float64)
    var_x, var_y = 0.75, 0.5625 - 1 / math.pi  # E[y^2] = 5/8 - 1/pi, minus (1/4)^2
    scale = math.sqrt((var_x + var_y) / 2 + noise**2)
    return ((x - mean) / scale).to(dtype)


# --- eight Gaussians ------------------------------------------------------------------------------------------


def eight_gaussians_means(radius: float = EIGHT_GAUSSIANS_RADIUS) -> torch.Tensor:
    """The eight means, evenly spaced on a circle starting at (radius, 0), counter-clockwise; (8, 2) float64."""
    angles = torch.arange(8, dtype=torch.float64) * (math.pi / 4)  # (8,)
    return radius * torch.stack([torch.cos(angles), torch.sin(angles)], 1)  # (8, 2)


def eight_gaussians_mixture(std: float = EIGHT_GAUSSIANS_STD) -> GaussianMixtureOracle:
    """The exact distribution that :func:`eight_gaussians` samples: equal weights, isotropic components.

    Means from :func:`eight_gaussians_means`; every component has covariance ``std^2 I``. The oracle gives
    the exact denoiser, score, responsibilities and log-density at every noise level.
    """
    if not (math.isfinite(std) and std > 0):
        raise DiffsightError(f"std must be a positive finite number, got {std}")
    return GaussianMixtureOracle(torch.full((8,), 1 / 8, dtype=torch.float64), eight_gaussians_means(), std**2)


def eight_gaussians(
    n: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    std: float = EIGHT_GAUSSIANS_STD,
) -> torch.Tensor:
    """Eight isotropic Gaussians on a circle (FFJORD, Grathwohl et al. 2019), scaled to unit std.

    FFJORD puts the means at radius 4 with std 0.5 and divides by 1.414; here the same geometry is scaled so
    that each coordinate has variance ``R^2 / 2 + std^2 = 1`` (R = :data:`EIGHT_GAUSSIANS_RADIUS`). The draws
    come from ``eight_gaussians_mixture(std).sample``: a component index, then a Gaussian around its mean.
    """
    n = _check_n(n)
    return eight_gaussians_mixture(std).sample(n, generator=generator, dtype=dtype)


# --- checkerboard ---------------------------------------------------------------------------------------------


def checkerboard(
    n: int, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Uniform density on the black squares of a 4 x 4 checkerboard (FFJORD, Grathwohl et al. 2019).

    FFJORD's recipe on [-2, 2]^2: ``x1 ~ U(-2, 2)``; ``x2 = u - 2c + (floor(x1) mod 2)`` with u ~ U(0, 1) and
    c a fair coin, which puts x2 in the squares of the opposite parity to x1's column. Both marginals are
    U(-2, 2) (std 2 / sqrt(3)), so the result is multiplied by sqrt(3) / 2 for unit std.
    """
    n = _check_n(n)
    x1 = 4 * _uniform(n, generator) - 2  # (n,)
    coin = (_uniform(n, generator) < 0.5).to(torch.float64)  # (n,)
    x2 = _uniform(n, generator) - 2 * coin + torch.remainder(torch.floor(x1), 2)  # (n,)
    return (torch.stack([x1, x2], 1) * (math.sqrt(3) / 2)).to(dtype)


# --- registry -------------------------------------------------------------------------------------------------

TOY2D: dict[str, Toy2DFn] = {
    "swiss_roll": swiss_roll,
    "moons": moons,
    "eight_gaussians": eight_gaussians,
    "checkerboard": checkerboard,
}
"""Every 2-D toy dataset by name."""


def make_toy2d(
    name: str, n: int, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Draw ``n`` points of the toy dataset called ``name``: ``make_toy2d("moons", 500, generator=g)``."""
    try:
        fn = TOY2D[name]
    except (KeyError, TypeError):
        raise unknown_name("toy dataset", str(name), list(TOY2D)) from None
    return fn(n, generator=generator, dtype=dtype)
