"""Model folders (DESIGN.md, "Artifacts"): diffusers layout plus ``diffsight.json`` and a model card.

Layout written by :func:`save_model_folder`::

    <dir>/unet/config.json                         diffusers.UNet2DModel.from_pretrained(<dir>/unet) loads it
    <dir>/unet/diffusion_pytorch_model.safetensors
    <dir>/mlp/config.json, <dir>/mlp/model.safetensors     (vector models instead of unet/)
    <dir>/scheduler/scheduler_config.json, model_index.json (VP models: a complete DDPMPipeline folder)
    <dir>/vae/config.json, <dir>/vae/diffusion_pytorch_model.safetensors  (latent models: the AutoencoderKL)
    <dir>/diffsight.json                           preconditioning, schedule, data fingerprint, metrics
    <dir>/README.md                                the model card

:func:`load_model` reads such a folder, a shipped model by name (``"digits"``, ``"shapes"``), or a plain
diffusers folder as written by ``DDPMPipeline.save_pretrained`` (through the discrete-VP adapter). Weights are
read from safetensors only: nothing a user hands us is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from diffsight._version import __version__
from diffsight.atomic import fsync_tree, write_bytes_atomic
from diffsight.errors import DiffsightError
from diffsight.models.card import model_card
from diffsight.models.discrete import from_diffusers
from diffsight.models.mlp import SigmaMLP
from diffsight.models.precond import EDMPrecond
from diffsight.models.unet import UNetEDMBackbone

__all__ = [
    "FORMAT_VERSION",
    "LoadedModel",
    "load_model",
    "resolve_model_path",
    "save_model_folder",
    "shipped_models",
    "update_model_metrics",
]

FORMAT_VERSION = 1


@dataclass
class LoadedModel:
    """A denoiser ready to sample, with what diffsight knows about it.

    Attributes:
        denoiser: ``D(x, sigma, cond) -> x0_hat`` (EDM-preconditioned network or discrete-VP adapter), eval mode.
        info: the parsed ``diffsight.json`` (or what could be inferred from a plain diffusers folder).
        path: the folder it came from.
    """

    denoiser: nn.Module
    info: dict[str, Any]
    path: Path
    network: nn.Module = field(repr=False, default=None)  # type: ignore[assignment]
    _sha256: str | None = field(repr=False, default=None, compare=False)

    @property
    def kind(self) -> str:
        return str(self.info["kind"])

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.info["event_shape"])

    @property
    def num_classes(self) -> int:
        cond = self.info.get("conditioning") or {}
        return int(cond.get("num_classes", 0))

    @property
    def null_class(self) -> int | None:
        cond = self.info.get("conditioning") or {}
        value = cond.get("null_class")
        return None if value is None else int(value)

    @property
    def class_names(self) -> tuple[str, ...]:
        cond = self.info.get("conditioning") or {}
        return tuple(cond.get("class_names") or (str(i) for i in range(self.num_classes)))

    @property
    def sigma_min(self) -> float:
        return float(self.denoiser.sigma_min)

    @property
    def sigma_max(self) -> float:
        return float(self.denoiser.sigma_max)

    @property
    def name(self) -> str:
        return str(self.info.get("name") or self.path.name)

    @property
    def is_latent(self) -> bool:
        """True for a denoiser in an autoencoder's latent space (:class:`~diffsight.models.latent.LatentModel`)."""
        return False

    @property
    def is_shipped(self) -> bool:
        """True when the folder is one of the models shipped inside the package."""
        zoo = shipped_models()
        return zoo.get(self.name, None) is not None and zoo[self.name].resolve() == self.path.resolve()

    def weights_sha256(self) -> str:
        """SHA-256 over every ``*.safetensors`` file of the folder (relative path and bytes, in path order): the
        model's identity in Traces and reports. Hashed once per loaded model (the weights in memory are what was
        loaded then)."""
        if self._sha256 is None:
            h = hashlib.sha256()
            for file in sorted(self.path.rglob("*.safetensors")):
                h.update(str(file.relative_to(self.path)).encode() + b"\0")
                h.update(file.read_bytes())
            self._sha256 = h.hexdigest()
        return self._sha256


def shipped_models() -> dict[str, Path]:
    """Name -> folder of every model shipped inside the package (``diffsight/zoo/models/<name>``)."""
    root = Path(str(resources.files("diffsight") / "zoo" / "models"))
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / "diffsight.json").is_file()}


def resolve_model_path(spec: str | Path) -> Path:
    """A shipped model's name or a folder path -> the folder, with an error that lists the names."""
    text = str(spec)
    zoo = shipped_models()
    if text in zoo:
        return zoo[text]
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    names = ", ".join(sorted(zoo)) or "(none installed)"
    raise DiffsightError(f"no model called {text!r}: pass a model folder or one of the shipped models: {names}")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DiffsightError(f"{path}: cannot read it as JSON ({err})") from None
    if not isinstance(value, dict):
        raise DiffsightError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def load_diffusers_module(cls: Any, folder: str | Path, what: str) -> nn.Module:
    """``cls.from_pretrained`` on a diffusers folder (``config.json`` + safetensors; never pickled weights), with
    errors that name the folder and the part (``what``: "UNet", "autoencoder", ...)."""
    path = Path(folder)
    if not (path / "config.json").is_file():
        raise DiffsightError(f"{path}: no config.json; is this a diffusers {what} folder?")
    if not any(path.glob("*.safetensors")):
        raise DiffsightError(f"{path}: no .safetensors weights (diffsight never loads pickled .bin files)")
    try:
        return cls.from_pretrained(str(path), use_safetensors=True)
    except Exception as err:  # diffusers raises many kinds; the message is what the user needs
        raise DiffsightError(f"{path}: cannot load the {what} ({type(err).__name__}: {err})") from None


def _load_unet(folder: Path) -> nn.Module:
    from diffusers import UNet2DModel

    return load_diffusers_module(UNet2DModel, folder, "UNet")


def _load_mlp(folder: Path) -> SigmaMLP:
    from safetensors.torch import load_file

    config = _read_json(folder / "config.json")
    net = SigmaMLP(**config)
    try:
        state = load_file(str(folder / "model.safetensors"))
        net.load_state_dict(state)
    except Exception as err:
        raise DiffsightError(f"{folder}: cannot load the MLP weights ({type(err).__name__}: {err})") from None
    return net


def _denoiser_from_info(info: dict[str, Any], network: nn.Module) -> nn.Module:
    kind = info.get("kind")
    if kind == "edm":
        edm = info["edm"]
        backbone = (
            network
            if info.get("network") == "mlp"
            else UNetEDMBackbone(network, c_noise_scale=float(edm.get("c_noise_scale", 250.0)))
        )
        return EDMPrecond(
            backbone, sigma_data=edm["sigma_data"], sigma_min=edm["sigma_min"], sigma_max=edm["sigma_max"]
        )
    if kind == "vp":
        vp = info["vp"]
        if "clip_x0" in vp:
            return from_diffusers(network, vp["scheduler_config"], clip_x0=vp["clip_x0"])
        return from_diffusers(network, vp["scheduler_config"])
    raise DiffsightError(f"unknown model kind {kind!r} in diffsight.json (expected 'edm' or 'vp')")


def load_model(spec: str | Path, *, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model folder, a shipped model by name, or a plain diffusers ``DDPMPipeline`` folder."""
    path = resolve_model_path(spec)
    info_path = path / "diffsight.json"
    if info_path.is_file():
        info = _read_json(info_path)
        version = int(info.get("format_version", 0))
        if version > FORMAT_VERSION:
            raise DiffsightError(f"{path} was written by a newer diffsight (format {version}); upgrade diffsight")
        network = _load_mlp(path / "mlp") if info.get("network") == "mlp" else _load_unet(path / "unet")
    elif (path / "unet").is_dir() and (path / "scheduler" / "scheduler_config.json").is_file():
        network = _load_unet(path / "unet")
        scheduler_config = _read_json(path / "scheduler" / "scheduler_config.json")
        rows = network.config.num_class_embeds
        info = {
            "format_version": 0,
            "name": path.name,
            "kind": "vp",
            "network": "unet",
            "event_shape": [network.config.in_channels, network.config.sample_size, network.config.sample_size],
            "vp": {"scheduler_config": scheduler_config},  # clipping as the scheduler config says
            "conditioning": {"num_classes": int(rows), "null_class": None} if rows else None,
            "sampling": {"sampler": "dpmpp_2m", "steps": 20},
            "source": "plain diffusers folder (no diffsight.json)",
        }
    else:
        raise DiffsightError(
            f"{path}: not a model folder (no diffsight.json, and no unet/ + scheduler/ of a diffusers pipeline)"
        )
    network.eval().requires_grad_(False)
    network.to(device)
    denoiser = _denoiser_from_info(info, network).eval()
    loaded = LoadedModel(denoiser=denoiser, info=info, path=path, network=network)
    if info.get("latent"):  # a denoiser in an autoencoder's latent space, the autoencoder in vae/
        from diffsight.models.latent import load_latent_model

        return load_latent_model(loaded, device=device)
    return loaded


def save_model_folder(
    path: str | Path, network: nn.Module, info: dict[str, Any], *, modules: dict[str, nn.Module] | None = None
) -> Path:
    """Write a model folder atomically: everything goes to a temporary sibling, is fsynced, then renamed.

    ``network`` is a ``UNet2DModel`` (info["network"] == "unet") or a :class:`SigmaMLP`; ``info`` becomes
    ``diffsight.json`` (format version and diffsight version are added) and feeds the model card. ``modules``:
    more diffusers models saved beside it, folder name -> model (e.g. ``{"vae": autoencoder}`` for latent models).
    """
    from safetensors.torch import save_file

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    info = {"format": "diffsight-model", "format_version": FORMAT_VERSION, "diffsight_version": __version__, **info}
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        if info.get("network") == "mlp":
            (tmp / "mlp").mkdir()
            (tmp / "mlp" / "config.json").write_text(json.dumps(network.config, indent=2))
            state = {k: v.detach().contiguous().cpu() for k, v in network.state_dict().items()}
            save_file(state, str(tmp / "mlp" / "model.safetensors"))
        else:
            network.save_pretrained(str(tmp / "unet"), safe_serialization=True)
        for name, module in (modules or {}).items():
            module.save_pretrained(str(tmp / name), safe_serialization=True)
        if info.get("kind") == "vp":
            (tmp / "scheduler").mkdir()
            (tmp / "scheduler" / "scheduler_config.json").write_text(
                json.dumps(info["vp"]["scheduler_config"], indent=2)
            )
            index = {
                "_class_name": "DDPMPipeline",
                "_diffusers_version": _diffusers_version(),
                "scheduler": ["diffusers", "DDPMScheduler"],
                "unet": ["diffusers", "UNet2DModel"],
            }
            (tmp / "model_index.json").write_text(json.dumps(index, indent=2))
        (tmp / "diffsight.json").write_text(json.dumps(info, indent=2, sort_keys=False))
        (tmp / "README.md").write_text(model_card(info))
        fsync_tree(tmp)
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _diffusers_version() -> str:
    from importlib.metadata import version

    return version("diffusers")


def vp_scheduler_config(**config: Any) -> dict[str, Any]:
    """A ``DDPMScheduler`` config dict (for VP models), defaults as diffusers'."""
    base = {
        "_class_name": "DDPMScheduler",
        "num_train_timesteps": 1000,
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "beta_schedule": "linear",
        "prediction_type": "epsilon",
        "clip_sample": True,
        "clip_sample_range": 1.0,
        "variance_type": "fixed_small",
    }
    base.update(config)
    return base


def update_model_metrics(path: str | Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """Merge ``metrics`` into a model folder's ``diffsight.json`` and rewrite its model card (atomically)."""
    folder = Path(path)
    info_path = folder / "diffsight.json"
    if not info_path.is_file():
        raise DiffsightError(f"{folder}: no diffsight.json to update (only diffsight model folders carry metrics)")
    info = _read_json(info_path)
    info["metrics"] = {**(info.get("metrics") or {}), **metrics}
    write_bytes_atomic(info_path, json.dumps(info, indent=2).encode())
    write_bytes_atomic(folder / "README.md", model_card(info).encode())
    return info
