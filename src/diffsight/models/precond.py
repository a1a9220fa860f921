"""EDM preconditioning: any backbone F becomes a denoiser D(x, sigma, cond) (Karras et al. 2022, sec. 5, Table 1).

    D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma), cond)

    c_skip  = sigma_data^2 / (sigma^2 + sigma_data^2)
    c_out   = sigma * sigma_data / sqrt(sigma^2 + sigma_data^2)
    c_in    = 1 / sqrt(sigma^2 + sigma_data^2)
    c_noise = log(sigma) / 4

With these, the network's input and its training target have unit variance at every noise level (EDM,
App. B.6). The training loss that goes with them (log-normal sigma, weight 1/c_out^2) lives in training/.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from diffsight.errors import DiffsightError, ShapeError
from diffsight.models.parametrization import per_sample

__all__ = ["Backbone", "EDMPrecond", "edm_coefficients"]

Backbone = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]
"""``F(x_in, c_noise, cond) -> out`` with ``x_in`` shaped (B, *event) and ``c_noise`` shaped (B,)."""


def edm_coefficients(
    sigma: torch.Tensor, sigma_data: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(c_skip, c_out, c_in, c_noise) of EDM Table 1 for noise levels ``sigma`` (any shape)."""
    sd2 = sigma_data**2
    denom = (sigma**2 + sd2).sqrt()
    return sd2 / (sigma**2 + sd2), sigma * sigma_data / denom, 1 / denom, sigma.log() / 4


class EDMPrecond(nn.Module):
    """A denoiser made of a backbone and EDM preconditioning.

    Args:
        backbone: ``F(x_in, c_noise, cond)``; for a diffusers UNet use :func:`diffsight.models.unet_backbone`.
        sigma_data: standard deviation of the data (0.5 for images scaled to [-1, 1]).
        sigma_min, sigma_max: the range of noise levels the network is trained on.
    """

    def __init__(
        self, backbone: Backbone, sigma_data: float = 0.5, sigma_min: float = 0.002, sigma_max: float = 80.0
    ) -> None:
        super().__init__()
        if sigma_data <= 0 or not 0 <= sigma_min < sigma_max:
            raise DiffsightError(
                f"need sigma_data > 0 and 0 <= sigma_min < sigma_max; got {sigma_data}, {sigma_min}, {sigma_max}"
            )
        self.backbone = backbone
        self.sigma_data = float(sigma_data)
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: Any = None) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
        if sigma.numel() == 1:
            sigma = sigma.expand(x.shape[0])
        if sigma.shape[0] != x.shape[0]:
            raise ShapeError(f"sigma must hold one value per sample ({x.shape[0]}), got {sigma.shape[0]}")
        c_skip, c_out, c_in, c_noise = edm_coefficients(sigma, self.sigma_data)  # each (B,)
        out = self.backbone(per_sample(c_in, x) * x, c_noise, cond)
        if out.shape != x.shape:
            raise ShapeError(f"the backbone returned shape {tuple(out.shape)} for input {tuple(x.shape)}")
        return per_sample(c_skip, x) * x + per_sample(c_out, x) * out.to(x.dtype)
