"""Procedural RGB shapes with known generative factors: ground truth for "when was colour decided?" and bias.

Every image shows one filled shape on a plain background. Five factors are drawn independently from settable
frequencies (to plant a bias, e.g. ``frequencies={"colour": [0.7, 0.1, 0.1, 0.1]}``), and returned as labels:

- shape: circle, square, triangle
- colour: red, green, blue, yellow
- size: small, large
- position: the centre of one quadrant (top-left, top-right, bottom-left, bottom-right)
- background: dark, light

Small seeded jitter (sub-pixel position, +-10% size, slight colour and background shading) keeps images
distinct while every factor stays unambiguous. Shapes are rendered with 4x4 supersampling (anti-aliased).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from diffsight.data.dataset import TrainingData
from diffsight.errors import DiffsightError

__all__ = ["SHAPE_FACTORS", "make_shapes"]

SHAPE_FACTORS: dict[str, tuple[str, ...]] = {
    "shape": ("circle", "square", "triangle"),
    "colour": ("red", "green", "blue", "yellow"),
    "size": ("small", "large"),
    "position": ("top-left", "top-right", "bottom-left", "bottom-right"),
    "background": ("dark", "light"),
}
_COLOURS = np.array([[0.9, 0.1, 0.1], [0.1, 0.8, 0.1], [0.15, 0.25, 0.95], [0.95, 0.85, 0.1]], dtype=np.float32)
_BACKGROUNDS = np.array([0.1, 0.55], dtype=np.float32)  # grey level of the dark / light background
_RADIUS = (0.16, 0.25)  # half-extent of a small / large shape, as a fraction of the image side
_SUPERSAMPLE = 4


def _frequencies(frequencies: Mapping[str, Sequence[float]] | None) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    given = dict(frequencies or {})
    unknown = set(given) - set(SHAPE_FACTORS)
    if unknown:
        raise DiffsightError(f"unknown shapes factor(s) {sorted(unknown)}; known: {sorted(SHAPE_FACTORS)}")
    for name, values in SHAPE_FACTORS.items():
        p = np.asarray(given.get(name, np.ones(len(values))), dtype=np.float64)
        if p.shape != (len(values),) or (p < 0).any() or p.sum() <= 0:
            raise DiffsightError(
                f"frequencies[{name!r}] must be {len(values)} non-negative numbers (for {', '.join(values)}), got {p}"
            )
        out[name] = p / p.sum()
    return out


def _inside(shape: int, u: np.ndarray, v: np.ndarray, radius: float) -> np.ndarray:
    """Mask of points (u, v), relative to the shape's centre, that lie inside the shape."""
    if shape == 0:  # circle
        return u**2 + v**2 <= radius**2
    if shape == 1:  # square of half-side 0.9 radius (slightly smaller, so it does not read as "large")
        half = radius * 0.9
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    # upward triangle inscribed in the circle of this radius (apex up; v grows downwards)
    top, bottom = -radius, radius * 0.75
    inside_v = (v >= top) & (v <= bottom)
    half_width = (v - top) / (bottom - top) * radius * 1.05
    return inside_v & (np.abs(u) <= half_width)


def make_shapes(
    n: int = 10_000,
    *,
    resolution: int = 16,
    seed: int = 0,
    frequencies: Mapping[str, Sequence[float]] | None = None,
    jitter: bool = True,
) -> TrainingData:
    """``n`` seeded RGB images (n, 3, resolution, resolution) in [-1, 1] with their five factors.

    Args:
        n: number of images.
        resolution: side length in pixels (at least 16, so that every factor is visible).
        seed: the images and factors are a pure function of (n, resolution, seed, frequencies, jitter).
        frequencies: factor name -> relative frequency of each value (defaults to uniform).
        jitter: small random variation of position, size and shading.
    """
    if n <= 0:
        raise DiffsightError(f"n must be positive, got {n}")
    if resolution < 16:
        raise DiffsightError(f"shapes needs resolution >= 16 so that size and shape stay visible, got {resolution}")
    probs = _frequencies(frequencies)
    rng = np.random.default_rng(seed)
    factors = {name: rng.choice(len(SHAPE_FACTORS[name]), size=n, p=probs[name]) for name in SHAPE_FACTORS}
    jit = rng.uniform(-1.0, 1.0, size=(n, 5)).astype(np.float32) if jitter else np.zeros((n, 5), np.float32)

    s = _SUPERSAMPLE
    grid = (np.arange(resolution * s, dtype=np.float32) + 0.5) / (resolution * s)  # pixel centres in [0, 1]
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    images = np.empty((n, 3, resolution, resolution), dtype=np.float32)
    for i in range(n):
        quadrant = factors["position"][i]
        cy = (0.27 if quadrant < 2 else 0.73) + 0.03 * jit[i, 0]
        cx = (0.27 if quadrant % 2 == 0 else 0.73) + 0.03 * jit[i, 1]
        radius = _RADIUS[factors["size"][i]] * (1.0 + 0.08 * jit[i, 2])
        mask_hi = _inside(int(factors["shape"][i]), xx - cx, yy - cy, radius).astype(np.float32)
        cover = mask_hi.reshape(resolution, s, resolution, s).mean(axis=(1, 3))  # (H, W) in [0, 1]
        background = _BACKGROUNDS[factors["background"][i]] + 0.05 * jit[i, 3]
        colour = np.clip(_COLOURS[factors["colour"][i]] * (1.0 + 0.08 * jit[i, 4]), 0.0, 1.0)
        images[i] = cover[None] * colour[:, None, None] + (1.0 - cover[None]) * background
    samples = torch.from_numpy(images * 2.0 - 1.0)
    return TrainingData(
        name="shapes",
        samples=samples,
        factors={name: torch.as_tensor(values, dtype=torch.int64) for name, values in factors.items()},
        factor_values=dict(SHAPE_FACTORS),
        source={
            "origin": "diffsight.data.make_shapes",
            "n": n,
            "resolution": resolution,
            "seed": seed,
            "jitter": jitter,
            "frequencies": {k: [round(float(x), 6) for x in v] for k, v in probs.items()},
        },
    )
