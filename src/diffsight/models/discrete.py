"""Adapters that turn networks trained on a discrete DDPM schedule into denoisers D(x, sigma, cond).

A VP network ``F(x_t, t, cond)`` predicts eps, v or x0 for ``x_t = alpha_t x0 + sigma_vp,t eps`` at a
training timestep t. In diffsight's coordinates ``x = x_t / alpha_t`` and ``sigma = sigma_vp / alpha``, so
(Karras et al. 2022, Table 1, "VP" column; Salimans & Ho 2022, App. D):

    alpha = 1 / sqrt(1 + sigma^2),  x_t = alpha x,  t = t(sigma)  (log-linear between timesteps)
    eps:  x0 = x - sigma * F
    v:    x0 = alpha^2 x - sigma alpha F
    x0:   x0 = F

The samplers then never need to know what the network predicts. Sampling on the model's own timesteps
(:meth:`DiscreteVPSchedule.sigmas`) reproduces DDPM/DDIM exactly; any other sigma in
[sigma_min, sigma_max] is served through a fractional timestep.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from diffsight.errors import DiffsightError, ShapeError
from diffsight.models.parametrization import canonical, convert, per_sample
from diffsight.models.precond import Backbone
from diffsight.models.vp_schedule import DiscreteVPSchedule, make_betas

__all__ = ["DiscreteVPDenoiser", "UNetBackbone", "from_diffusers"]

_SNAP = 1e-3  # a fractional timestep this close to an integer is the integer (float round-off of sigma)


class DiscreteVPDenoiser(nn.Module):
    """Denoiser for a network trained to predict ``prediction_type`` on a discrete VP schedule.

    Args:
        backbone: ``F(x_t, t, cond)``, t of shape (B,) (float, integer-valued on the training grid).
        schedule: the training schedule (betas) of the network.
        prediction_type: ``eps``, ``v`` or ``x0`` (diffusers' ``epsilon``, ``v_prediction``, ``sample``).
        clip_x0: clamp the x0 estimate to [-clip_x0, clip_x0] (diffusers' ``clip_sample``); None: no clamp.
    """

    def __init__(
        self,
        backbone: Backbone,
        schedule: DiscreteVPSchedule,
        prediction_type: str = "eps",
        clip_x0: float | None = None,
    ) -> None:
        super().__init__()
        self.prediction_type = canonical(prediction_type)
        if self.prediction_type == "score":
            raise DiffsightError("a discrete VP network predicts eps, v or x0; wrap a score network with EDMPrecond")
        if clip_x0 is not None and clip_x0 <= 0:
            raise DiffsightError(f"clip_x0 must be positive or None, got {clip_x0}")
        self.backbone = backbone
        self.schedule = schedule
        self.clip_x0 = clip_x0
        self.sigma_min = schedule.sigma_min
        self.sigma_max = schedule.sigma_max

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """Training timestep (float) of each sigma; values within 1e-3 of an integer snap to it."""
        t = self.schedule.sigma_to_t(sigma.detach().to("cpu", torch.float64))
        snapped = t.round()
        return torch.where((t - snapped).abs() < _SNAP, snapped, t)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: Any = None) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
        if sigma.numel() == 1:
            sigma = sigma.expand(x.shape[0])
        if sigma.shape[0] != x.shape[0]:
            raise ShapeError(f"sigma must hold one value per sample ({x.shape[0]}), got {sigma.shape[0]}")
        alpha = per_sample((1 + sigma**2).rsqrt(), x)  # (B, 1, ..., 1)
        sigma_b = per_sample(sigma, x)
        x_t = alpha * x
        t = self.timestep(sigma).to(device=x.device, dtype=x.dtype)  # (B,)
        out = self.backbone(x_t, t, cond)
        if out.shape != x.shape:
            raise ShapeError(f"the network returned shape {tuple(out.shape)} for input {tuple(x.shape)}")
        x0 = convert(out.to(x.dtype), self.prediction_type, "x0", x_t, alpha, sigma_b * alpha)
        if self.clip_x0 is not None:
            x0 = x0.clamp(-self.clip_x0, self.clip_x0)
        return x0


class UNetBackbone(nn.Module):
    """Call a diffusers ``UNet2DModel`` as a backbone ``F(x, t, cond)``; ``cond`` goes to ``class_labels``."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Any = None) -> torch.Tensor:
        return self.unet(x, t, class_labels=cond).sample


_FROM_CONFIG = object()


def from_diffusers(
    unet: nn.Module, scheduler_config: Mapping[str, Any] | Any, *, clip_x0: float | None | object = _FROM_CONFIG
) -> DiscreteVPDenoiser:
    """A denoiser for a diffusers ``UNet2DModel`` and the config of the scheduler it was trained with.

    ``scheduler_config`` is a ``DDPMScheduler`` (or DDIM/DPM-Solver) config: the scheduler object, its
    ``.config`` or the dict of ``scheduler_config.json``. Reads the betas (``beta_schedule``, ``beta_start``,
    ``beta_end``, ``num_train_timesteps`` or ``trained_betas``), ``prediction_type`` and ``clip_sample``.

    Clipping: a DDPM/DDIM config defaults to ``clip_sample=True``, and then every sampler sees x0 clamped to
    [-1, 1] and steps along the direction implied by the clamped x0. That equals diffusers' DDIM with
    ``use_clipped_model_output=True`` and its DDPM, but not diffusers' default DDIM (which steps along the
    unclipped eps) nor its DPM-Solver (which never clamps). Pass ``clip_x0=None`` to turn clamping off, or a
    number to choose the range, whatever the config says.
    """
    cfg = dict(getattr(scheduler_config, "config", scheduler_config))
    if cfg.get("rescale_betas_zero_snr"):
        raise DiffsightError("rescale_betas_zero_snr gives an infinite terminal sigma; it is not supported")
    if cfg.get("thresholding"):
        raise DiffsightError("dynamic thresholding is not supported; set thresholding=False in the scheduler config")
    if cfg.get("trained_betas") is not None:
        betas = torch.as_tensor(cfg["trained_betas"], dtype=torch.float64)
    else:
        betas = make_betas(
            cfg.get("beta_schedule", "linear"),
            int(cfg.get("num_train_timesteps", 1000)),
            float(cfg.get("beta_start", 1e-4)),
            float(cfg.get("beta_end", 0.02)),
        )
    if clip_x0 is _FROM_CONFIG:
        clip = float(cfg.get("clip_sample_range", 1.0)) if cfg.get("clip_sample", False) else None
    else:
        clip = clip_x0  # type: ignore[assignment]
    return DiscreteVPDenoiser(
        UNetBackbone(unet), DiscreteVPSchedule(betas), cfg.get("prediction_type", "epsilon"), clip_x0=clip
    )
