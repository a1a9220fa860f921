"""Latent models: a denoiser in the latent space of an autoencoder, and the decoder that turns latents into images.

Latent diffusion (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion Models", sec. 3):
an autoencoder ``E``/``D`` is trained first (reconstruction plus a small KL penalty towards N(0, I), their
eq. 25 regularisation "KL-reg"), then a diffusion model is trained on ``z = (mu_E(x) - shift) * scale`` where
``scale`` is measured on the training data so that the latents have unit variance (their sec. 4.3.2 and
App. G: "we rescale the latents ... by the component-wise standard deviation"; here one scalar, as in
Stable Diffusion's ``scaling_factor``). Sampling runs entirely in latent space; the result is decoded once::

    x = D(z / scale + shift)

The autoencoder is a diffusers ``AutoencoderKL`` built from a config in our code (:data:`AUTOENCODER_PRESETS`),
stored in ``<model>/vae/`` (``config.json`` + ``diffusion_pytorch_model.safetensors``) with the measured
``scaling_factor`` and ``shift_factor`` in its config, the diffusers convention
``latents = (latents - shift_factor) * scaling_factor`` (so ``AutoencoderKL.from_pretrained(<model>/vae)``
has everything a diffusers user needs).

:class:`LatentModel` is a :class:`~diffsight.models.folder.LoadedModel` whose ``denoiser`` and ``event_shape``
are those of the latent space (so samplers, traces and branching work unchanged) and which adds
:meth:`~LatentModel.encode`, :meth:`~LatentModel.decode` and ``image_shape``.

Notation: ``x`` image (B, C, H, W) in [-1, 1]; ``z`` scaled latent (B, c, h, w) with ``h = H / f``, ``f`` the
downsampling factor ``2 ** (len(block_out_channels) - 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from diffsight.errors import DiffsightError, ShapeError, unknown_name
from diffsight.models.folder import LoadedModel

__all__ = [
    "AUTOENCODER_PRESETS",
    "LatentModel",
    "autoencoder_config",
    "build_autoencoder",
    "decode_latents",
    "downsampling_factor",
    "encode_images",
    "load_autoencoder",
    "load_latent_model",
]

AUTOENCODER_PRESETS: dict[str, dict[str, Any]] = {
    # for tests: ~40 k parameters, one downsampling (16x16 -> 8x8)
    "tiny": {"block_out_channels": (8, 16), "layers_per_block": 1, "norm_num_groups": 4, "attention": False},
    # the shapes-latent example: ~160 k parameters, one downsampling
    "small": {"block_out_channels": (16, 32), "layers_per_block": 1, "norm_num_groups": 8, "attention": False},
    # two downsamplings (32x32 -> 8x8), attention in the middle block
    "medium": {"block_out_channels": (32, 64, 64), "layers_per_block": 2, "norm_num_groups": 16, "attention": True},
}


def autoencoder_config(
    preset: str,
    *,
    in_channels: int,
    resolution: int,
    latent_channels: int = 4,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``AutoencoderKL`` config of a preset for ``in_channels`` x ``resolution`` x ``resolution`` images."""
    if preset not in AUTOENCODER_PRESETS:
        raise unknown_name("autoencoder preset", preset, list(AUTOENCODER_PRESETS))
    spec = AUTOENCODER_PRESETS[preset]
    channels = list(spec["block_out_channels"])
    factor = 2 ** (len(channels) - 1)
    if resolution % factor != 0 or resolution // factor < 2:
        raise DiffsightError(
            f"resolution {resolution} must be a multiple of {factor} (and at least {2 * factor}) for the "
            f"{preset!r} autoencoder preset"
        )
    if latent_channels < 1:
        raise DiffsightError(f"latent_channels must be at least 1, got {latent_channels}")
    config: dict[str, Any] = {
        "in_channels": in_channels,
        "out_channels": in_channels,
        "down_block_types": ["DownEncoderBlock2D"] * len(channels),
        "up_block_types": ["UpDecoderBlock2D"] * len(channels),
        "block_out_channels": channels,
        "layers_per_block": spec["layers_per_block"],
        "norm_num_groups": spec["norm_num_groups"],
        "latent_channels": latent_channels,
        "sample_size": resolution,
        "mid_block_add_attention": spec["attention"],
        "scaling_factor": 1.0,  # replaced by the measured value after training
        "shift_factor": 0.0,
        "force_upcast": False,
    }
    config.update(overrides or {})
    return config


def build_autoencoder(config: dict[str, Any]) -> nn.Module:
    """A fresh ``diffusers.AutoencoderKL`` from a config dict (diffusers is imported only here)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(**config)


def downsampling_factor(vae: nn.Module) -> int:
    """``f``: image side / latent side."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def decode_latents(vae: nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents (B, c, h, w) -> images (B, C, H, W): ``D(z / scaling_factor + shift_factor)``."""
    param = next(vae.parameters())
    z = latents.to(param.device, param.dtype) / float(vae.config.scaling_factor) + float(vae.config.shift_factor or 0)
    return vae.decode(z).sample


def encode_images(vae: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Images (B, C, H, W) -> scaled latents ``(mu_E(x) - shift_factor) * scaling_factor`` (B, c, h, w)."""
    param = next(vae.parameters())
    mean = vae.encode(images.to(param.device, param.dtype)).latent_dist.mean  # (B, c, h, w)
    return (mean - float(vae.config.shift_factor or 0.0)) * float(vae.config.scaling_factor)


def load_autoencoder(folder: str | Path) -> nn.Module:
    """An ``AutoencoderKL`` from a diffusers folder (``config.json`` + safetensors; never pickled weights)."""
    from diffusers import AutoencoderKL

    from diffsight.models.folder import load_diffusers_module

    return load_diffusers_module(AutoencoderKL, folder, "AutoencoderKL")


@dataclass
class LatentModel(LoadedModel):
    """A denoiser in the latent space of an autoencoder (see the module docstring).

    ``denoiser`` and ``event_shape`` are the latent space's: sample, trace and branch as with any model, then
    :meth:`decode`. ``image_shape`` is the decoded images' (C, H, W).
    """

    vae: nn.Module = field(repr=False, default=None)  # type: ignore[assignment]

    @property
    def is_latent(self) -> bool:
        return True

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def shift_factor(self) -> float:
        return float(self.vae.config.shift_factor or 0.0)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return self.event_shape

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.info["latent"]["image_shape"])

    @property
    def factor(self) -> int:
        """Downsampling factor ``f`` (image side / latent side)."""
        return downsampling_factor(self.vae)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) in [-1, 1] -> scaled latents (B, c, h, w): the posterior mean, shifted and scaled."""
        if tuple(images.shape[1:]) != self.image_shape:
            raise ShapeError(f"expected images shaped (B, {self.image_shape}), got {tuple(images.shape)}")
        return encode_images(self.vae, images)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents (B, c, h, w) -> images (B, C, H, W) (not clamped: the decoder is differentiable)."""
        if tuple(latents.shape[1:]) != self.latent_shape:
            raise ShapeError(f"expected latents shaped (B, {self.latent_shape}), got {tuple(latents.shape)}")
        return decode_latents(self.vae, latents)

    def decode_batched(self, latents: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """:meth:`decode` of (N, c, h, w) latents in chunks, without gradients, as float32 on the CPU."""
        with torch.no_grad():
            parts = [self.decode(chunk).to("cpu", torch.float32) for chunk in torch.split(latents, batch_size)]
        return torch.cat(parts) if parts else torch.empty((0, *self.image_shape))


def load_latent_model(base: LoadedModel, *, device: str | torch.device = "cpu") -> LatentModel:
    """Turn a loaded latent-space denoiser (``info["latent"]`` set) into a :class:`LatentModel` with its ``vae/``."""
    vae = load_autoencoder(base.path / "vae")
    vae.eval().requires_grad_(False)
    vae.to(device)
    if vae.config.latent_channels != base.event_shape[0]:
        raise DiffsightError(
            f"{base.path}: the autoencoder makes {vae.config.latent_channels} latent channels but the denoiser "
            f"takes {base.event_shape[0]}"
        )
    return LatentModel(denoiser=base.denoiser, info=base.info, path=base.path, network=base.network, vae=vae)
