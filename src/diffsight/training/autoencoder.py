"""Training the autoencoder of a latent diffusion model, and measuring the scale of its latents.

The loss (Rombach et al. 2022, sec. 3 and App. G, "KL-reg"; Kingma & Welling 2014, eq. 10) per batch:

    L = mean_i (D(z_i) - x_i)^2  +  kl_weight * KL(q(z | x) || N(0, I)) / (c h w)

with ``z ~ q(z | x) = N(mu_E(x), diag sigma_E(x)^2)`` drawn by reparameterisation from a seeded generator, the
reconstruction a per-element mean and the KL (closed form, ``0.5 sum(mu^2 + sigma^2 - 1 - log sigma^2)``) per
latent element. A small ``kl_weight`` keeps the latent near a standard normal without blurring the
reconstructions; there is no perceptual or adversarial term (for 16x16 procedural images MSE is enough).

After training, :func:`latent_statistics` measures the mean and standard deviation of the posterior means over the
training images; ``shift_factor = mean`` and ``scaling_factor = 1 / std`` go into the autoencoder's config, so the
diffusion model sees latents with zero mean and unit variance (EDM's ``sigma_data = 1``).

Reproducibility: initial weights from ``seed``, the data order from a generator seeded with ``seed + 1``, the
reparameterisation noise from one seeded with ``seed + 2``; on one machine the same settings give the same weights.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import nn

from diffsight.data import TrainingData
from diffsight.errors import DiffsightError
from diffsight.models.latent import autoencoder_config, build_autoencoder, encode_images

__all__ = [
    "AutoencoderResult",
    "AutoencoderSettings",
    "autoencoder_settings",
    "encode_dataset",
    "latent_statistics",
    "train_autoencoder",
]


@dataclass(frozen=True)
class AutoencoderSettings:
    """The ``[model] latent = {...}`` table of a training config: the autoencoder and how to train it."""

    preset: str = "small"  # see diffsight.models.latent.AUTOENCODER_PRESETS
    latent_channels: int = 4
    vae: dict[str, Any] = field(default_factory=dict)  # AutoencoderKL config overrides
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    kl_weight: float = 1e-3
    seed: int = 0

    def validate(self) -> None:
        checks = [
            (self.steps >= 1, f"latent.steps must be >= 1, got {self.steps}"),
            (self.batch_size >= 1, f"latent.batch_size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"latent.lr must be > 0, got {self.lr}"),
            (self.kl_weight >= 0, f"latent.kl_weight must be >= 0, got {self.kl_weight}"),
            (self.latent_channels >= 1, f"latent.latent_channels must be >= 1, got {self.latent_channels}"),
        ]
        for ok, message in checks:
            if not ok:
                raise DiffsightError(f"invalid training config: {message}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def autoencoder_settings(table: dict[str, Any]) -> AutoencoderSettings:
    """``[model] latent`` -> :class:`AutoencoderSettings`; unknown keys are errors."""
    if not isinstance(table, dict):
        raise DiffsightError("[model] latent must be a table, e.g. latent = { preset = 'small', steps = 2000 }")
    known = {f.name for f in fields(AutoencoderSettings)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise DiffsightError(f"unknown key(s) {unknown} in [model] latent; known keys: {', '.join(sorted(known))}")
    settings = AutoencoderSettings(**table)
    settings.validate()
    return settings


@dataclass(frozen=True)
class AutoencoderResult:
    """A trained autoencoder (eval mode, scaling and shift set in its config) and how training went."""

    vae: nn.Module
    losses: list[float]  # one per step
    reconstruction_rmse: float  # RMS error of D(mu_E(x)) over the training images
    scaling_factor: float
    shift_factor: float
    seconds: float


def _kl_per_element(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) averaged over all elements (closed form, Kingma & Welling App. B)."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()


def latent_statistics(vae: nn.Module, images: torch.Tensor, batch_size: int = 256) -> tuple[float, float]:
    """(mean, std) of the unscaled posterior means mu_E(x) over ``images``, all elements pooled."""
    with torch.no_grad():
        param = next(vae.parameters())
        means = [
            vae.encode(chunk.to(param.device, param.dtype)).latent_dist.mean.double().cpu()
            for chunk in torch.split(images, batch_size)
        ]
    flat = torch.cat(means).reshape(-1)
    std = float(flat.std())
    if not std > 0:
        raise DiffsightError("the autoencoder's latents have zero variance: train it longer or raise latent.lr")
    return float(flat.mean()), std


def encode_dataset(vae: nn.Module, data: TrainingData, batch_size: int = 256) -> TrainingData:
    """The training set in latent space: scaled latents (N, c, h, w), with the images' labels and factors."""
    with torch.no_grad():
        z = torch.cat([encode_images(vae, chunk).float().cpu() for chunk in torch.split(data.samples, batch_size)])
    return TrainingData(
        name=f"{data.name}:latent",
        samples=z,
        labels=data.labels,
        class_names=data.class_names,
        factors=dict(data.factors),
        factor_values=dict(data.factor_values),
        source={"images": data.name, "image_fingerprint": data.fingerprint(), **dict(data.source)},
    )


def train_autoencoder(
    data: TrainingData,
    settings: AutoencoderSettings,
    *,
    device: str | torch.device = "cpu",
    log: Callable[[int, float], None] | None = None,
) -> AutoencoderResult:
    """Train an ``AutoencoderKL`` on ``data``'s images (see the module docstring); ``log(step, loss)`` per step."""
    settings.validate()
    if not data.is_image:
        raise DiffsightError("latent diffusion needs image data (N, C, H, W)")
    _, channels, height, width = data.samples.shape
    if height != width:
        raise DiffsightError(f"images must be square for the autoencoder, got {height}x{width}; set a resolution")
    config = autoencoder_config(
        settings.preset,
        in_channels=channels,
        resolution=height,
        latent_channels=settings.latent_channels,
        overrides=settings.vae,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        vae = build_autoencoder(config)
    vae.to(device).train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=settings.lr, weight_decay=0.0, foreach=True)
    order_gen = torch.Generator().manual_seed(settings.seed + 1)
    noise_gen = torch.Generator().manual_seed(settings.seed + 2)
    n = len(data)
    batch = min(settings.batch_size, n)
    perm = torch.randperm(n, generator=order_gen)
    cursor = 0
    losses: list[float] = []
    began = time.perf_counter()
    for step in range(settings.steps):
        if cursor + batch > n:
            perm, cursor = torch.randperm(n, generator=order_gen), 0
        x = data.samples[perm[cursor : cursor + batch]].to(device)  # (B, C, H, W)
        cursor += batch
        posterior = vae.encode(x).latent_dist
        eps = torch.randn(posterior.mean.shape, generator=noise_gen).to(device)  # (B, c, h, w)
        z = posterior.mean + posterior.std * eps  # reparameterisation
        recon = vae.decode(z).sample
        loss = (recon - x).pow(2).mean() + settings.kl_weight * _kl_per_element(posterior.mean, posterior.logvar)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if not torch.isfinite(loss):
            raise DiffsightError(f"the autoencoder's loss became {losses[-1]} at step {step}; lower latent.lr")
        if log is not None:
            log(step, losses[-1])
    vae.eval().requires_grad_(False)
    shift, std = latent_statistics(vae, data.samples)
    vae.register_to_config(scaling_factor=1.0 / std, shift_factor=shift)
    with torch.no_grad():
        errors = []
        for chunk in torch.split(data.samples, 256):
            mean = vae.encode(chunk.to(device)).latent_dist.mean
            errors.append((vae.decode(mean).sample.cpu() - chunk).pow(2).reshape(len(chunk), -1).sum(1))
    rmse = float((torch.cat(errors).sum() / data.samples.numel()).sqrt())
    return AutoencoderResult(vae, losses, rmse, 1.0 / std, shift, time.perf_counter() - began)
