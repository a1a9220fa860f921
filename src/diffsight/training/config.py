"""Training configuration: three TOML tables, ``[data]``, ``[model]`` and ``[train]``, validated up front.

Example (``configs/digits.toml``)::

    [data]
    name = "digits"

    [model]
    preset = "small"

    [train]
    steps = 10000
    batch_size = 64

Unknown keys are errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from diffsight.errors import DiffsightError

__all__ = ["DataConfig", "ModelConfig", "TrainConfig", "TrainSettings", "config_from_dict", "load_config"]


@dataclass(frozen=True)
class DataConfig:
    """Which data: a built-in name or a path (see :func:`diffsight.data.load_data`)."""

    name: str = "digits"
    resolution: int | None = None
    channels: int | None = None
    n: int | None = None
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelConfig:
    """Which network and which diffusion formulation.

    ``kind = "edm"`` trains an EDM-preconditioned denoiser (Karras et al. 2022); ``kind = "vp"`` a DDPM-style
    eps- or v-predicting UNet on a discrete schedule (Ho et al. 2020; Salimans & Ho 2022), saved as a complete
    diffusers ``DDPMPipeline`` folder. A non-empty ``latent`` table (:class:`~diffsight.training.autoencoder.
    AutoencoderSettings`) first trains an autoencoder and then the diffusion model on its latents.
    """

    network: str = "auto"  # auto | unet | mlp
    preset: str = "small"
    unet: dict[str, Any] = field(default_factory=dict)  # UNet2DModel config overrides
    mlp: dict[str, Any] = field(default_factory=dict)  # SigmaMLP keyword overrides
    kind: str = "edm"  # edm | vp
    conditional: bool = True  # class-conditional when the data has labels
    sigma_data: float = 0.5
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    prediction_type: str = "epsilon"  # vp only: epsilon | v_prediction | sample
    beta_schedule: str = "linear"  # vp only
    num_train_timesteps: int = 1000  # vp only
    latent: dict[str, Any] = field(default_factory=dict)  # non-empty: latent diffusion (training/latent.py)


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation, logging and checkpointing."""

    steps: int = 10_000
    batch_size: int = 64
    lr: float = 2e-4
    warmup_steps: int = 200
    lr_schedule: str = "constant"  # constant | cosine (after warm-up, cosine decay to 0 at `steps`)
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    p_mean: float = -1.2  # EDM: ln(sigma) ~ N(p_mean, p_std^2)
    p_std: float = 1.2
    class_dropout: float = 0.1  # share of labels replaced by the null class (classifier-free guidance)
    seed: int = 0
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    sample_every: int = 1000
    sample_steps: int = 20
    sample_n: int = 64
    log_every: int = 50
    grad_accum: int = 1
    mixed_precision: str = "no"  # no | fp16 | bf16 (GPUs)
    threads: int = 0  # torch threads on CPU; 0 = leave torch's default


@dataclass(frozen=True)
class TrainConfig:
    name: str = "model"
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainSettings = field(default_factory=TrainSettings)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["train"]["adam_betas"] = list(self.train.adam_betas)
        return out

    def with_overrides(self, **overrides: Any) -> TrainConfig:
        """Apply CLI overrides: data, resolution, channels, steps, batch_size, seed (None is ignored)."""
        cfg = self
        if overrides.get("data") is not None:
            cfg = replace(cfg, data=replace(cfg.data, name=str(overrides["data"])))
        if overrides.get("resolution") is not None:
            cfg = replace(cfg, data=replace(cfg.data, resolution=int(overrides["resolution"])))
        if overrides.get("channels") is not None:
            if overrides["channels"] not in (1, 3):
                raise DiffsightError(f"channels must be 1 or 3, got {overrides['channels']}")
            cfg = replace(cfg, data=replace(cfg.data, channels=int(overrides["channels"])))
        train_keys = {k: v for k, v in overrides.items() if k in ("steps", "batch_size", "seed") and v is not None}
        if train_keys:
            cfg = replace(cfg, train=replace(cfg.train, **train_keys))
        cfg.validate()
        return cfg

    def validate(self) -> None:
        t, m = self.train, self.model
        checks = [
            (t.steps >= 1, f"train.steps must be >= 1, got {t.steps}"),
            (t.batch_size >= 1, f"train.batch_size must be >= 1, got {t.batch_size}"),
            (t.lr > 0, f"train.lr must be > 0, got {t.lr}"),
            (t.warmup_steps >= 0, "train.warmup_steps must be >= 0"),
            (
                t.lr_schedule in ("constant", "cosine"),
                f"train.lr_schedule must be 'constant' or 'cosine', got {t.lr_schedule!r}",
            ),
            (0 <= t.ema_decay < 1, f"train.ema_decay must lie in [0, 1), got {t.ema_decay}"),
            (0 <= t.class_dropout < 1, f"train.class_dropout must lie in [0, 1), got {t.class_dropout}"),
            (t.p_std > 0, "train.p_std must be > 0"),
            (t.grad_clip >= 0, "train.grad_clip must be >= 0 (0 turns clipping off)"),
            (t.grad_accum >= 1, "train.grad_accum must be >= 1"),
            (t.batch_size % t.grad_accum == 0, "train.batch_size must be divisible by train.grad_accum"),
            (t.checkpoint_every >= 1 and t.sample_every >= 0 and t.log_every >= 1, "checkpoint/log intervals >= 1"),
            (t.keep_checkpoints >= 1, "train.keep_checkpoints must be >= 1"),
            (t.mixed_precision in ("no", "fp16", "bf16"), "train.mixed_precision must be no, fp16 or bf16"),
            (m.kind in ("edm", "vp"), f"model.kind must be 'edm' or 'vp', got {m.kind!r}"),
            (m.network in ("auto", "unet", "mlp"), f"model.network must be auto, unet or mlp, got {m.network!r}"),
            (m.sigma_data > 0 and 0 < m.sigma_min < m.sigma_max, "need sigma_data > 0 and 0 < sigma_min < sigma_max"),
            (
                m.prediction_type in ("epsilon", "v_prediction", "sample"),
                "model.prediction_type must be epsilon, v_prediction or sample",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise DiffsightError(f"invalid training config: {message}")
        if m.latent:  # the autoencoder's table has its own keys and checks
            from diffsight.training.autoencoder import autoencoder_settings

            autoencoder_settings(m.latent)


def _build(cls: type, table: Any, where: str) -> Any:
    if not isinstance(table, dict):
        raise DiffsightError(f"[{where}] must be a table")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise DiffsightError(f"unknown key(s) {unknown} in [{where}]; known keys: {', '.join(sorted(known))}")
    values = dict(table)
    if "adam_betas" in values:
        values["adam_betas"] = tuple(values["adam_betas"])
    return cls(**values)


def config_from_dict(raw: dict[str, Any]) -> TrainConfig:
    unknown = sorted(set(raw) - {"name", "description", "data", "model", "train"})
    if unknown:
        raise DiffsightError(
            f"unknown top-level key(s) {unknown}; expected name, description, [data], [model], [train]"
        )
    cfg = TrainConfig(
        name=str(raw.get("name", "model")),
        description=str(raw.get("description", "")),
        data=_build(DataConfig, raw.get("data", {}), "data"),
        model=_build(ModelConfig, raw.get("model", {}), "model"),
        train=_build(TrainSettings, raw.get("train", {}), "train"),
    )
    cfg.validate()
    return cfg


def load_config(path: str | Path | None) -> TrainConfig:
    """Read a TOML training config (None gives the defaults)."""
    if path is None:
        return TrainConfig()
    p = Path(path)
    if not p.is_file():
        raise DiffsightError(f"config file {p} not found")
    try:
        raw = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as err:
        raise DiffsightError(f"{p}: not valid TOML ({err})") from None
    raw.setdefault("name", p.stem)
    return config_from_dict(raw)
