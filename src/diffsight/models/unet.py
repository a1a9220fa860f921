"""diffusers ``UNet2DModel`` presets sized for a CPU, and the backbone adapter EDM preconditioning calls.

Costs (forward pass per image, measured with FlopCounterMode; shared/research/core_perf.md, sec. 1.3 and 9.2):
the ``small`` preset is ~0.7 M parameters and ~32 MFLOP at 8x8; at 16x16 it adds a level (~0.8 M parameters).

Class conditioning goes through the UNet's own class embedding (``num_class_embeds``) with one extra index, the
*null class*, for unconditional evaluation and classifier-free guidance (Ho & Salimans 2022): a conditional model
trained with label dropout is also an unconditional model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from diffsight.errors import DiffsightError, unknown_name
from diffsight.models.labels import class_labels

__all__ = ["C_NOISE_SCALE", "UNET_PRESETS", "UNetEDMBackbone", "build_unet", "unet_config"]

C_NOISE_SCALE = 250.0
"""EDM's c_noise = ln(sigma) / 4 spans about [-1.6, 1.1]; the UNet's sinusoidal timestep embedding resolves a range
of a few hundred (DDPM's t in [0, 1000)), so the backbone feeds it ``C_NOISE_SCALE * c_noise``."""

UNET_PRESETS: dict[str, dict[str, Any]] = {
    # for tests: two levels, no attention, ~0.16 M parameters
    "tiny": {"channels": (16, 32), "layers_per_block": 1, "attention": False, "norm_num_groups": 8},
    # the digits / shapes models: attention at the lowest resolution
    "small": {"channels": (32, 64), "layers_per_block": 1, "attention": True, "norm_num_groups": 8},
    "medium": {"channels": (64, 128), "layers_per_block": 2, "attention": True, "norm_num_groups": 16},
}


def unet_config(
    preset: str,
    *,
    in_channels: int,
    resolution: int,
    num_classes: int = 0,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``UNet2DModel`` config of a preset for images of ``in_channels`` x ``resolution`` x ``resolution``.

    Resolutions of 16 and more get one extra level (the lowest keeps its resolution, so 28 -> 14 -> 7 works).
    ``num_classes > 0`` adds a class embedding with ``num_classes + 1`` rows, the last one the null class.
    """
    if preset not in UNET_PRESETS:
        raise unknown_name("UNet preset", preset, list(UNET_PRESETS))
    if resolution < 4:
        raise DiffsightError(f"images must be at least 4x4 for a UNet, got {resolution}")
    spec = UNET_PRESETS[preset]
    channels = list(spec["channels"])
    if resolution >= 16:
        channels = [channels[0], *channels]  # one more level at full resolution
    if resolution % (2 ** (len(channels) - 1)) != 0:
        raise DiffsightError(
            f"resolution {resolution} must be divisible by {2 ** (len(channels) - 1)} for the {preset!r} preset"
        )
    attn = spec["attention"]
    down = ["DownBlock2D"] * (len(channels) - 1) + ["AttnDownBlock2D" if attn else "DownBlock2D"]
    up = ["AttnUpBlock2D" if attn else "UpBlock2D"] + ["UpBlock2D"] * (len(channels) - 1)
    config: dict[str, Any] = {
        "sample_size": resolution,
        "in_channels": in_channels,
        "out_channels": in_channels,
        "block_out_channels": channels,
        "down_block_types": down,
        "up_block_types": up,
        "layers_per_block": spec["layers_per_block"],
        "norm_num_groups": spec["norm_num_groups"],
        "attention_head_dim": 8,
        "time_embedding_type": "positional",
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "num_class_embeds": num_classes + 1 if num_classes > 0 else None,
    }
    config.update(overrides or {})
    return config


def build_unet(config: dict[str, Any]) -> nn.Module:
    """A fresh ``diffusers.UNet2DModel`` from a config dict (diffusers is imported only here)."""
    from diffusers import UNet2DModel

    return UNet2DModel(**config)


class UNetEDMBackbone(nn.Module):
    """``F(x_in, c_noise, cond)`` for EDM preconditioning around a diffusers ``UNet2DModel``.

    ``cond`` holds class indices (B,); ``None`` means unconditional and becomes the null class when the UNet has a
    class embedding. ``c_noise`` is scaled by ``c_noise_scale`` before the timestep embedding.
    """

    def __init__(self, unet: nn.Module, *, c_noise_scale: float = C_NOISE_SCALE) -> None:
        super().__init__()
        self.unet = unet
        self.c_noise_scale = float(c_noise_scale)
        inner = getattr(unet, "module", unet)  # DistributedDataParallel keeps the UNet (and its config) in .module
        rows = getattr(inner.config, "num_class_embeds", None)
        self.null_class: int | None = None if rows is None else int(rows) - 1

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor, cond: Any = None) -> torch.Tensor:
        labels = class_labels(cond, x_in.shape[0], self.null_class, x_in.device)
        timestep = c_noise.to(x_in.dtype) * self.c_noise_scale  # (B,)
        return self.unet(x_in, timestep, class_labels=labels).sample
