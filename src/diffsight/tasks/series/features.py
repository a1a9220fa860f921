"""What the series denoiser is conditioned on, built the same way in training, imputation and streaming.

For a batch of windows ``z`` (B, K, L) in normalised units and a mask ``m`` (B, K, L) of the values it may see,
the side information (in the spirit of CSDI's side information, Tashiro et al. 2021, sec. 4.2) is

- ``m`` itself (first K channels, the contract the denoiser relies on);
- ``f``: the straight-line interpolation of the visible values along time (flat beyond the first and last one,
  0 where a feature shows nothing), centred on its window mean and divided by the feature's local scale. It is
  computed over the window plus ``context`` steps on each side, so a gap that crosses the window's edge is bridged
  to the next visible value outside it (as straight-line interpolation of the whole series would) instead of
  being extrapolated flat;
- ``c``: the window mean of the fill (the local level, in z-scores; constant along the window);
- ``d``: the distance (in steps) to the nearest visible value of the same feature, as log(1+d)/log(1+L);
- optionally the seasonal phase ``sin, cos(2 pi t / period)`` of the absolute time index t (2 channels).

With a seasonal profile s (per column, :mod:`~diffsight.tasks.series.fill`), the straight line is drawn
through the seasonally adjusted values ``z - s`` and the profile is added back: ``f = line(z - s) + s``; with a
per-column drift d, the fill continues with slope d beyond the first and last visible value instead of flat.

The diffused variable is the residual ``u = (z - f_raw) / local_scale`` at the hidden positions, so the prior mean
(u = 0) is the fill and the network learns what it misses (curvature, season, other columns).
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "conditioning",
    "cond_channels",
    "context_windows",
    "linear_fill",
    "phase_channels",
]


def linear_fill(
    values: torch.Tensor, mask: torch.Tensor, drift: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear interpolation along the last axis through the entries where ``mask`` is True.

    Args:
        values: (B, K, L); entries where ``mask`` is False are ignored.
        mask: (B, K, L) bool.
        drift: (K,) step per time step with which the fill continues beyond the first and last visible entry
            (None: flat).

    Returns:
        ``(filled, dist)``, both (B, K, L): the interpolation (equal to ``values`` where visible; the nearest visible
        value, plus the drift times the distance, beyond the first/last one; 0 where a row shows nothing) and the
        distance to the nearest visible entry (L where a row shows nothing).
    """
    length = values.shape[-1]
    t = torch.arange(length, device=values.device).expand_as(mask)  # (B, K, L)
    prev = torch.where(mask, t, -1).cummax(-1).values  # last visible index <= t, -1 if none
    nxt = torch.where(mask, t, length).flip(-1).cummin(-1).values.flip(-1)  # first visible index >= t, L if none
    has_prev, has_next = prev >= 0, nxt < length
    v_prev = values.gather(-1, prev.clamp(min=0))
    v_next = values.gather(-1, nxt.clamp(max=length - 1))
    w = (t - prev).to(values.dtype) / (nxt - prev).clamp(min=1).to(values.dtype)
    between = v_prev + w * (v_next - v_prev)
    if drift is None:
        after, before = v_prev, v_next
    else:
        step = drift.to(values.dtype)[None, :, None]  # (1, K, 1)
        after, before = v_prev + step * (t - prev).to(values.dtype), v_next - step * (nxt - t).to(values.dtype)
    one_side = torch.where(has_prev, after, torch.where(has_next, before, torch.zeros_like(values)))
    filled = torch.where(has_prev & has_next, between, one_side)
    d_prev = torch.where(has_prev, t - prev, length)
    d_next = torch.where(has_next, nxt - t, length)
    return filled, torch.minimum(d_prev, d_next).to(values.dtype)


def phase_channels(start: torch.Tensor, length: int, period: int) -> torch.Tensor:
    """(B, 2, L) sin/cos of the seasonal phase of absolute time indices ``start[b] + 0..L-1``."""
    t = start.to(torch.float64)[:, None] + torch.arange(length, dtype=torch.float64)  # (B, L)
    angle = 2 * math.pi * torch.remainder(t, period) / period
    return torch.stack([angle.sin(), angle.cos()], dim=1).float()


def cond_channels(num_features: int, period: int | None) -> int:
    """Number of conditioning channels: mask, fill, level and distance per feature, plus 2 for the phase."""
    return 4 * num_features + (2 if period else 0)


def context_windows(
    z: torch.Tensor, observed: torch.Tensor, starts: torch.Tensor, length: int, context: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows with context: (B, K, length + 2 context) values and mask of a series ``z`` (T, K) (NaN-free) and its
    mask ``observed`` (T, K), covering ``starts[b] - context`` to ``starts[b] + length + context``; steps before the
    series' start or after its end are marked not observed."""
    if context:
        pad_z = z.new_zeros(context, z.shape[1])
        pad_m = observed.new_zeros(context, observed.shape[1])
        z = torch.cat([pad_z, z, pad_z])  # (T + 2 context, K): index i of the padded series is time i - context
        observed = torch.cat([pad_m, observed, pad_m])
    idx = starts[:, None] + torch.arange(length + 2 * context)  # (B, L + 2P)
    return z[idx].permute(0, 2, 1), observed[idx].permute(0, 2, 1)


def conditioning(
    z: torch.Tensor,
    mask: torch.Tensor,
    local_scale: torch.Tensor,
    start: torch.Tensor,
    period: int | None,
    context: int = 0,
    seasonal: torch.Tensor | None = None,
    drift: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Side information and the straight-line fill of windows seen through ``mask``.

    Args:
        z, mask: (B, K, L + 2 context) windows with ``context`` extra steps on each side
            (:func:`context_windows`); only the visible entries of ``z`` are read.
        local_scale: (K,) per-feature scale of the fill channel.
        start: (B,) absolute time index of each window's first step (after the context).
        period: seasonal period for the phase channels, or None.
        seasonal: (K, 2) seasonal profile coefficients (sin, cos) in the units of ``z``
            (:func:`~diffsight.tasks.series.fill.fit_seasonal_profile`), or None for plain straight lines; used
            only with a period.
        drift: (K,) step per time step that the fill continues with beyond the first and last visible value of
            the window and its context (:func:`~diffsight.tasks.series.fill.fit_drift`); None: flat.

    Returns ``(cond, fill)`` over the central L steps: cond (B, 4K [+2], L) float32 with the mask in the first K
    channels, and the raw fill (B, K, L) in the units of ``z`` (add ``u * local_scale`` to it to get values back).
    """
    season = None
    if period and seasonal is not None and bool(seasonal.any()):
        phase = phase_channels(start - context, z.shape[-1], period)  # (B, 2, L + 2P): sin, cos
        season = torch.einsum("kc,bcl->bkl", seasonal.float(), phase).to(z.dtype)  # (B, K, L + 2P)
    adjusted = z if season is None else z - season
    values = torch.where(mask, adjusted, torch.zeros_like(z))
    fill, dist = linear_fill(values, mask, drift)
    if season is not None:
        fill = fill + season
    end = z.shape[-1] - context
    fill, dist, mask = fill[..., context:end], dist[..., context:end], mask[..., context:end]  # (B, K, L)
    length = end - context
    dist = dist.clamp(max=length)
    scale = local_scale.to(z.dtype)[None, :, None]  # (1, K, 1)
    level = fill.mean(-1, keepdim=True)  # (B, K, 1)
    centred = (fill - level) / scale
    parts = [mask.to(z.dtype), centred, level.expand_as(fill), torch.log1p(dist) / math.log1p(length)]
    if period:
        parts.append(phase_channels(start, length, period).to(z.dtype))
    return torch.cat(parts, dim=1).float(), fill
