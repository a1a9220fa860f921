"""The ``README.md`` model card written into every model folder (Mitchell et al. 2019, "Model Cards")."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["model_card"]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return "`" + json.dumps(value) + "`"
    return str(value)


def _metrics_lines(metrics: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for key, value in metrics.items():
        if isinstance(value, dict) and not any(isinstance(v, (dict, list)) for v in value.values()):
            lines.append(f"- **{key}**: " + ", ".join(f"{k} {_fmt(v)}" for k, v in value.items()))
        elif isinstance(value, dict):
            lines.append(f"- **{key}**:")
            lines.extend("  " + line for line in _metrics_lines(value))
        else:
            lines.append(f"- **{key}**: {_fmt(value)}")
    return lines


def model_card(info: dict[str, Any]) -> str:
    """Markdown model card from a model's ``diffsight.json`` content: data, config, metrics, intended use, limits."""
    name = info.get("name", "model")
    data = info.get("data") or {}
    cond = info.get("conditioning") or {}
    training = info.get("training") or {}
    metrics = info.get("metrics") or {}
    kind = info.get("kind")
    lines = [
        f"# {name}",
        "",
        info.get("description", "A diffusion model trained with diffsight."),
        "",
        "## Model",
        "",
        f"- Network: {info.get('network')} ({_fmt(info.get('parameters', '?'))} parameters), "
        f"sample shape {tuple(info.get('event_shape', ()))}",
    ]
    if kind == "edm":
        edm = info.get("edm", {})
        lines.append(
            f"- EDM preconditioning (Karras et al. 2022): sigma_data {_fmt(edm.get('sigma_data'))}, "
            f"sigma in [{_fmt(edm.get('sigma_min'))}, {_fmt(edm.get('sigma_max'))}], "
            f"UNet timestep = {_fmt(edm.get('c_noise_scale'))} * ln(sigma) / 4"
        )
    elif kind == "vp":
        lines.append("- Discrete VP (DDPM) model; scheduler config in `scheduler/scheduler_config.json`")
    if cond:
        lines.append(
            f"- Class-conditional: {cond.get('num_classes')} classes, null class {cond.get('null_class')} "
            "(unconditional sampling and classifier-free guidance)"
        )
    else:
        lines.append("- Unconditional")
    latent = info.get("latent")
    if latent:
        ae = latent.get("autoencoder") or {}
        lines.append(
            f"- Latent diffusion: the denoiser works on {_fmt(latent.get('latent_shape'))} latents of the "
            f"AutoencoderKL in `vae/` (images {_fmt(latent.get('image_shape'))}, scaling_factor "
            f"{_fmt(latent.get('scaling_factor'))}, shift_factor {_fmt(latent.get('shift_factor'))}, reconstruction "
            f"RMSE {_fmt(ae.get('reconstruction_rmse'))}); `load_model` decodes through it"
        )
    lines += [
        "- Load: `diffsight.models.load_model(<this folder>)`; the UNet alone: "
        "`diffusers.UNet2DModel.from_pretrained(<this folder>/unet)`",
        "",
        "## Training data",
        "",
        f"- {data.get('name')}: {data.get('n')} samples of shape {tuple(data.get('shape', ()))}",
        f"- Fingerprint (SHA-256 of the exact tensors): `{data.get('fingerprint')}`",
    ]
    if data.get("source"):
        lines.append(f"- Source: {_fmt(data.get('source'))}")
    if data.get("factors"):
        lines.append(f"- Factors: {_fmt(data.get('factors'))}")
    lines += ["", "## Training", ""]
    keys = ("command", "steps", "batch_size", "images_seen", "wall_time_s", "machine", "notes", "final_loss", "config")
    for key in keys:
        if key in training:
            lines.append(f"- {key.replace('_', ' ')}: {_fmt(training[key])}")
    lines += ["", "## Metrics", ""]
    lines += _metrics_lines(metrics) if metrics else ["- not measured yet (run `diffsight eval <folder> --json`)"]
    lines += [
        "",
        "## Intended use",
        "",
        info.get(
            "intended_use",
            "Research and teaching: explaining how a diffusion model forms its samples. Not for production use.",
        ),
        "",
        "## Limits",
        "",
        info.get(
            "limits",
            "Trained on a small dataset at low resolution; samples reflect that data only, including its biases.",
        ),
        "",
    ]
    return "\n".join(lines)
