"""Latent diffusion training: the autoencoder first, then the ordinary trainer on the encoded data.

A config with a non-empty ``[model] latent`` table (``configs/shapes-latent.toml``) runs in two stages in one run
folder:

1. :func:`~diffsight.training.autoencoder.train_autoencoder` on the images of ``[data]``; the result (with the
   measured ``scaling_factor`` / ``shift_factor``) goes to ``<run>/vae/`` and is reused when the run resumes or
   is started again with the same autoencoder settings and data (so the latents, hence the latent data
   fingerprint that checkpoints check, stay the same).
2. The images are encoded once (posterior means, shifted and scaled to unit variance) into a
   :class:`~diffsight.data.TrainingData` of shape (N, c, h, w), and :class:`LatentTrainer`, a
   :class:`~diffsight.training.Trainer`, trains the usual UNet on it: EDM preconditioning, checkpoints, EMA, resume
   and multi-process training are the image trainer's, unchanged. Only three things differ: sample grids are
   decoded, ``diffsight.json`` gets a ``latent`` section (and ``data`` describes the images), and the model folder
   gets ``vae/`` beside ``unet/``.

Why precomputed latents rather than encoding every batch: the encoder is deterministic here (posterior mean),
so encoding once is exact and removes the encoder from every training step; the latent set of 10,000 shapes is
10,000 x 4 x 8 x 8 floats (10 MB).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from diffsight.atomic import write_bytes_atomic
from diffsight.data import TrainingData, load_data
from diffsight.data.image_io import save_grid
from diffsight.errors import DiffsightError
from diffsight.models.folder import save_model_folder
from diffsight.models.latent import decode_latents, downsampling_factor, load_autoencoder
from diffsight.sampling.generate import generate_samples
from diffsight.training.autoencoder import (
    AutoencoderSettings,
    autoencoder_settings,
    encode_dataset,
    train_autoencoder,
)
from diffsight.training.config import TrainConfig
from diffsight.training.trainer import Trainer, TrainResult

__all__ = ["LatentTrainer", "prepare_autoencoder", "train_latent"]

_STAMP = "diffsight-autoencoder.json"  # beside the run's vae/: what it was trained with, and how it went


def _image_data(config: TrainConfig) -> TrainingData:
    d = config.data
    return load_data(d.name, resolution=d.resolution, channels=d.channels, n=d.n, seed=d.seed, options=d.options)


def prepare_autoencoder(
    images: TrainingData, settings: AutoencoderSettings, folder: Path, *, write: bool = True
) -> tuple[nn.Module, dict[str, Any]]:
    """The trained autoencoder of ``folder`` when it was made from these settings and images, else a new one
    (written there when ``write``). Returns (autoencoder in eval mode, the stamp: settings, fingerprint, results)."""
    stamp_path = folder / _STAMP
    want = {"settings": settings.to_dict(), "images": images.fingerprint()}
    if stamp_path.is_file():
        stamp = json.loads(stamp_path.read_text())
        if {k: stamp.get(k) for k in want} == want:
            vae = load_autoencoder(folder)
            return vae.eval().requires_grad_(False), stamp
    result = train_autoencoder(images, settings)
    stamp = {
        **want,
        "final_loss": sum(result.losses[-10:]) / len(result.losses[-10:]),
        "first_loss": result.losses[0],
        "reconstruction_rmse": result.reconstruction_rmse,
        "scaling_factor": result.scaling_factor,
        "shift_factor": result.shift_factor,
        "wall_time_s": round(result.seconds, 1),
    }
    if write:
        result.vae.save_pretrained(str(folder), safe_serialization=True)
        write_bytes_atomic(stamp_path, json.dumps(stamp, indent=2).encode())  # last: marks vae/ complete
    return result.vae, stamp


class LatentTrainer(Trainer):
    """The :class:`Trainer` on latents of an autoencoder trained first (see the module docstring)."""

    def __init__(
        self, config: TrainConfig, run_dir: str | Path, *, progress: bool = True, command: str | None = None
    ) -> None:
        if not config.model.latent:
            raise DiffsightError("LatentTrainer needs a [model] latent table; use Trainer for pixel-space models")
        config.validate()
        settings = autoencoder_settings(config.model.latent)
        if config.train.threads > 0:
            torch.set_num_threads(config.train.threads)
        self.images = _image_data(config)
        run = Path(run_dir)
        main = int(os.environ.get("RANK", "0")) == 0
        if main:
            run.mkdir(parents=True, exist_ok=True)
        # every process trains the same (seeded) autoencoder; only the main one writes it
        self.vae, self.autoencoder_stamp = prepare_autoencoder(self.images, settings, run / "vae", write=main)
        self.autoencoder_settings = settings
        latents = encode_dataset(self.vae, self.images)
        super().__init__(config, run_dir, data=latents, progress=progress, command=command)
        self.vae.to(self.accelerator.device)

    def sample_grid(self, path: Path) -> Path:
        t = self.config.train
        n = t.sample_n
        labels = torch.arange(n) % self.num_classes if self.num_classes > 0 else None
        with torch.no_grad():
            latents = generate_samples(
                self.ema_denoiser(),
                self.data.event_shape,
                n,
                steps=t.sample_steps,
                generator=torch.Generator().manual_seed(1234),
                labels=labels,
            )
            images = decode_latents(self.vae, latents).float().cpu()
        nrow = self.num_classes if self.num_classes and n % self.num_classes == 0 and self.num_classes > 4 else None
        return save_grid(images.clamp(-1, 1), path, nrow=nrow)

    def model_info(self, final_loss: float) -> dict[str, Any]:
        info = super().model_info(final_loss)
        info["description"] = self.config.description or (
            f"A latent diffusion model of {self.images.name}, trained by diffsight."
        )
        info["data"] = self.images.describe()  # the images; the latents are described under "latent"
        info["latent"] = {
            "image_shape": list(self.images.event_shape),
            "latent_shape": list(self.data.event_shape),
            "downsampling_factor": downsampling_factor(self.vae),
            "scaling_factor": float(self.vae.config.scaling_factor),
            "shift_factor": float(self.vae.config.shift_factor or 0.0),
            "autoencoder": {
                "class": "diffusers.AutoencoderKL",
                "folder": "vae",
                "parameters": sum(p.numel() for p in self.vae.parameters()),
                **self.autoencoder_stamp,
            },
            "latent_data_fingerprint": self.fingerprint,
        }
        return info

    def save_model(self, path: Path, *, final_loss: float) -> Path:
        return save_model_folder(path, self.ema.model, self.model_info(final_loss), modules={"vae": self.vae})


def train_latent(
    config: TrainConfig, run_dir: str | Path, *, resume: bool = False, progress: bool = True, command: str | None = None
) -> TrainResult:
    """Train the autoencoder (or reuse the run's) and the latent diffusion model of ``config`` into ``run_dir``."""
    return LatentTrainer(config, run_dir, progress=progress, command=command).run(resume=resume)
