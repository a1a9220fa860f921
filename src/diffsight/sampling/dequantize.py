"""Uniform dequantisation and discrete bits/dim (Theis, van den Oord & Bethge 2016, sec. 3.1; Ho et al. 2019,
Flow++, sec. 3.1).

Convention (the one diffsight's data loaders use). Quantised data take ``levels`` values on the grid

    x_k = lo + k * delta,   k = 0, 1, ..., levels - 1,   delta = (hi - lo) / (levels - 1)

so the end points ``lo`` and ``hi`` are themselves data values. 8-bit images mapped ``k -> k / 127.5 - 1`` are
``levels=256`` on ``(-1, 1)`` (delta = 1/127.5); scikit-learn digits ``0..16`` mapped ``k -> k / 8 - 1`` by
``diffsight.data.digits`` are ``levels=17`` on ``(-1, 1)`` (delta = 1/8).

Dequantisation adds ``u ~ U[0, 1)`` in level units: ``x~ = lo + (k + u) * delta`` lies in bin k,
``[x_k, x_k + delta)`` (with ``centered=True``: ``[x_k - delta/2, x_k + delta/2)``). The bins tile space, so
a continuous density p on x~ defines a discrete model ``P(k) = integral of p over bin k`` and by Jensen

    -log P(k) <= E_u[ -log p(x~) ] - d * log(delta).

Sign: delta < 1 for image data, so ``-d log delta = d log(1/delta) > 0`` is *added* to the continuous NLL: in
bits per dimension ``bpd_discrete = nll / (d ln 2) + log2(1 / delta)``: ``+ log2(127.5) = 6.994`` bits for
8-bit data on [-1, 1] and ``+ log2(8) = 3`` bits for digits. (score_sde's "+7" is log2(128): the same offset
for the other grid convention, ``x = lo + (hi - lo) (k + u) / levels``, whose bins are ``(hi - lo) / levels``
wide.)
"""

from __future__ import annotations

import math

import torch

from diffsight.errors import DiffsightError, ShapeError

__all__ = ["bin_width", "bits_per_dim", "to_levels", "uniform_dequantize"]

_GRID_TOL = 1e-3  # how far (in level units) a value may sit from its grid point and still count as quantised


def bin_width(levels: int = 256, value_range: tuple[float, float] = (-1.0, 1.0)) -> float:
    """The grid spacing ``delta = (hi - lo) / (levels - 1)``: the width of one dequantisation bin."""
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise DiffsightError(f"levels must be an integer >= 2 (256 for 8-bit data, 17 for digits), got {levels!r}")
    lo, hi = (float(v) for v in value_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise DiffsightError(f"value_range must be finite (lo, hi) with hi > lo, got {value_range!r}")
    return (hi - lo) / (levels - 1)


def to_levels(x: torch.Tensor, levels: int = 256, value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """The integer level k of every value of quantised data ``x = lo + k * delta`` (int64, shaped like x).

    Raises :class:`DiffsightError` when a value is off the grid (more than 1e-3 level units) or outside
    ``[lo, hi]``: usually a wrong ``levels`` (digits need 17) or data already dequantised.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ShapeError(f"x must be a floating-point torch.Tensor, got {type(x).__name__}")
    delta = bin_width(levels, value_range)
    pos = (x.double() - float(value_range[0])) / delta  # position in level units
    k = pos.round()
    off = (pos - k).abs().max().item() if x.numel() else 0.0
    if not off <= _GRID_TOL:
        raise DiffsightError(
            f"x is not quantised to {levels} levels on {tuple(value_range)}: a value sits {off:.3g} level units "
            f"from the grid lo + k (hi - lo) / (levels - 1). Pass the data's own levels (sklearn digits: 17, "
            f"8-bit images: 256) and value range, and dequantise only once."
        )
    if x.numel() and (k.min().item() < 0 or k.max().item() > levels - 1):
        raise DiffsightError(
            f"x has values outside value_range {tuple(value_range)} (levels {int(k.min())}..{int(k.max())} of "
            f"0..{levels - 1}); pass the range the data were scaled to"
        )
    return k.long()


def uniform_dequantize(
    x: torch.Tensor,
    levels: int = 256,
    generator: torch.Generator | None = None,
    value_range: tuple[float, float] = (-1.0, 1.0),
    *,
    centered: bool = False,
) -> torch.Tensor:
    """Uniform dequantisation: ``x~ = lo + (k + u) delta`` with ``u ~ U[0, 1)`` i.i.d. per value.

    Args:
        x: quantised data on the grid ``lo + k delta`` (see the module docstring), any shape.
        levels: number of quantisation levels (256 for 8-bit images, 17 for sklearn digits).
        generator: the source of ``u``; the same seed gives the same result.
        value_range: ``(lo, hi)``, the values of level 0 and level ``levels - 1``.
        centered: use ``u - 1/2`` instead, so the bins are centred on the grid points.

    Returns:
        A tensor shaped and typed like ``x``; every value stays inside its bin (its half-open upper edge is
        respected after rounding to x's dtype).
    """
    k = to_levels(x, levels, value_range).double()
    delta = bin_width(levels, value_range)
    lo = float(value_range[0])
    device = generator.device if generator is not None else x.device
    u = torch.rand(x.shape, generator=generator, dtype=torch.float64, device=device).to(x.device)
    shift = -0.5 if centered else 0.0
    lower64 = lo + (k + shift) * delta  # (same shape as x) bin edges, float64
    out = (lower64 + u * delta).to(x.dtype)
    upper = (lower64 + delta).to(x.dtype)
    return torch.minimum(out, torch.nextafter(upper, torch.full_like(upper, -math.inf)))  # stay below the edge


def bits_per_dim(
    nll_nats: torch.Tensor | float,
    dims: int,
    levels: int = 256,
    value_range: tuple[float, float] = (-1.0, 1.0),
) -> torch.Tensor | float:
    """Discrete bits/dim of the dequantised density: ``(nll - dims * log(delta)) / (dims * ln 2)``.

    ``nll_nats`` is the continuous negative log-density (nats, per sample) of a *dequantised* point in the data's
    own scale (e.g. [-1, 1]); ``delta`` is the bin width of :func:`bin_width`. Averaged over the dequantisation
    noise this bounds the discrete model's bits/dim from above (module docstring). Returns the same type as
    ``nll_nats``.
    """
    if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
        raise DiffsightError(f"dims must be a positive integer (values per sample, e.g. 64 for 8x8), got {dims!r}")
    delta = bin_width(levels, value_range)
    return (nll_nats - dims * math.log(delta)) / (dims * math.log(2.0))
