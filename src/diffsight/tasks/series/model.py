"""A trained series model: its configuration, network, normalisation statistics; saved as safetensors + JSON.

A model folder holds ``series.safetensors`` (the network weights, nothing else) and ``series.json`` (the
configuration, the column names, the per-column mean/std, local scale and residual scale, the denoiser's sigma
range, the length of the training series and the anomaly-score calibration). Nothing is ever unpickled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from diffsight.atomic import write_bytes_atomic
from diffsight.errors import DiffsightError, unknown_name
from diffsight.sampling import SAMPLERS
from diffsight.tasks.series.features import cond_channels
from diffsight.tasks.series.network import SeriesDenoiser, SeriesNet

__all__ = ["FORMAT", "SeriesConfig", "SeriesModel", "load_series_model", "save_series_model"]

FORMAT = "diffsight.series/1"
MIN_WINDOW = 8


@dataclass(frozen=True)
class SeriesConfig:
    """How a series model is built, trained and sampled (saved in ``series.json``).

    Args:
        window: window length L in time steps (shortened to the series length when that is shorter).
        period: seasonal period in steps (12 for monthly data with a yearly cycle); adds phase side information.
        hidden, blocks: width and depth of the convolution network.
        train_steps, batch, lr: AdamW optimisation with a cosine learning-rate decay.
        sampler, sample_steps: a diffsight sampler name and its number of Karras steps.
        stream_steps: sampler steps of the streaming forecasts (fewer: one value per row; calibrated alike).
        holdout: fraction of the observed values kept out of training to calibrate the width of the intervals
            and to choose the training step kept (0 turns both off).
        select_every: every this many training steps (and before the first and after the last), the error on
            the held-out values is measured and the best weights are kept (early stopping; 0, the default, keeps
            the last: on the benchmark series the held-out values are too few to choose well, and the same
            values then calibrate the interval width too narrowly).
        context: steps on each side of a window over which the straight-line fill is computed
            (:func:`~diffsight.tasks.series.features.conditioning`); None = one window length.
        seasonal_fill: with a period, draw the straight-line fill around a per-column seasonal profile where it
            lowers the leave-one-out error of the fill by at least 10% (:mod:`~diffsight.tasks.series.fill`).
        drift_ends: beyond a column's first and last visible value, continue the fill with the column's drift
            where it is significant, instead of flat (:func:`~diffsight.tasks.series.fill.fit_drift`).
        seed: seeds the training windows, masks and noise.
    """

    window: int = 48
    period: int | None = None
    hidden: int = 48
    blocks: int = 6
    train_steps: int = 800
    batch: int = 64
    lr: float = 2e-3
    sampler: str = "heun"
    sample_steps: int = 16
    stream_steps: int = 8
    holdout: float = 0.1
    context: int | None = None
    select_every: int = 0
    seasonal_fill: bool = True
    drift_ends: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.window < MIN_WINDOW:
            raise DiffsightError(f"window must be at least {MIN_WINDOW} steps, got {self.window}")
        if self.period is not None and self.period < 2:
            raise DiffsightError(f"period must be at least 2 steps (or None), got {self.period}")
        for name in ("hidden", "blocks", "train_steps", "batch", "sample_steps", "stream_steps"):
            if getattr(self, name) < 1:
                raise DiffsightError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.select_every < 0:
            raise DiffsightError(f"select_every must be >= 0 (0 keeps the last weights), got {self.select_every}")
        if self.context is not None and self.context < 0:
            raise DiffsightError(f"context must be >= 0 steps (or None for one window), got {self.context}")
        if not 0 <= self.holdout < 0.5:
            raise DiffsightError(f"holdout must be in [0, 0.5), got {self.holdout}")
        if not self.lr > 0:
            raise DiffsightError(f"lr must be positive, got {self.lr}")
        if self.sampler not in SAMPLERS:
            raise unknown_name("sampler", self.sampler, list(SAMPLERS))


@dataclass(eq=False)
class SeriesModel:
    """A trained model. ``window`` is the window length actually used; ``calibration`` is the root-mean-square
    streaming forecast error on training windows, in predictive standard deviations (None before calibration);
    ``spread`` widens (> 1) or narrows the samples around their median so that the intervals cover held-out
    values at their stated level; ``context`` is the number of steps on each side of a window that its
    straight-line fill sees (0 for models saved before it existed); ``residual_scale`` (K,) is the unit of the
    diffused residual per column (z units; the local scale for models saved before it existed);
    ``selected_step`` the training step whose weights were kept (None without held-out selection); ``seasonal``
    (K, 2) the seasonal profile coefficients (sin, cos; z units) that the straight-line fill is drawn around
    (zero rows: plain straight lines; :mod:`~diffsight.tasks.series.fill`); ``drift`` (K,) the step per time step
    (z units) that the fill continues with beyond the first and last visible value (0: flat); ``stack_weight``
    w in [0, 1] the share of the network's correction to that fill that imputations keep: the median of each
    hidden value's draws is moved to ``fill + w (median - fill)`` (a stacked regression fitted on held-out values,
    Breiman 1996; 1 keeps the network's draws as they are)."""

    config: SeriesConfig
    denoiser: SeriesDenoiser
    columns: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    local_scale: np.ndarray
    window: int
    train_length: int
    calibration: float | None = None
    spread: float = 1.0
    context: int = 0
    residual_scale: np.ndarray | None = None
    selected_step: int | None = None
    seasonal: np.ndarray | None = None
    drift: np.ndarray | None = None
    stack_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.residual_scale is None:
            self.residual_scale = self.local_scale.copy()
        if self.seasonal is None:
            self.seasonal = np.zeros((len(self.columns), 2))
        if self.drift is None:
            self.drift = np.zeros(len(self.columns))

    @property
    def num_features(self) -> int:
        return len(self.columns)

    def normalise(self, values: np.ndarray) -> np.ndarray:
        """(T, K) values -> per-column z-scores (NaN stays NaN)."""
        return (values - self.mean) / self.std

    def denormalise(self, z: np.ndarray) -> np.ndarray:
        return z * self.std + self.mean

    def meta(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "config": asdict(self.config),
            "columns": list(self.columns),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "local_scale": self.local_scale.tolist(),
            "window": self.window,
            "train_length": self.train_length,
            "sigma_data": self.denoiser.sigma_data,
            "sigma_min": self.denoiser.sigma_min,
            "sigma_max": self.denoiser.sigma_max,
            "calibration": self.calibration,
            "spread": self.spread,
            "context": self.context,
            "residual_scale": self.residual_scale.tolist(),
            "selected_step": self.selected_step,
            "seasonal": self.seasonal.tolist(),
            "drift": self.drift.tolist(),
            "stack_weight": self.stack_weight,
        }


def build_denoiser(
    config: SeriesConfig,
    num_features: int,
    sigma_data: float,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
) -> SeriesDenoiser:
    """A fresh network for ``num_features`` columns; sigma range scaled to the residual scale sigma_data."""
    net = SeriesNet(num_features, cond_channels(num_features, config.period), config.hidden, config.blocks)
    lo = sigma_min if sigma_min is not None else 0.004 * sigma_data
    hi = sigma_max if sigma_max is not None else 10.0 * sigma_data
    return SeriesDenoiser(net, sigma_data=sigma_data, sigma_min=lo, sigma_max=hi)


def save_series_model(model: SeriesModel, folder: str | Path) -> Path:
    """Write ``series.safetensors`` and ``series.json`` into ``folder`` (created; each file written atomically)."""
    from safetensors.torch import save

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.denoiser.state_dict().items()}
    write_bytes_atomic(folder / "series.safetensors", save(state))
    write_bytes_atomic(folder / "series.json", json.dumps(model.meta(), indent=2).encode())
    return folder


def load_series_model(folder: str | Path) -> SeriesModel:
    """Load a folder written by :func:`save_series_model` (weights through safetensors only)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    meta_path, weights_path = folder / "series.json", folder / "series.safetensors"
    if not meta_path.is_file() or not weights_path.is_file():
        raise DiffsightError(
            f"{folder} is not a series model folder (it needs series.json and series.safetensors); "
            "train one with `diffsight watch --train DATA.csv --save FOLDER`"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise DiffsightError(f"{meta_path} is not valid JSON: {err}") from None
    if meta.get("format") != FORMAT:
        raise DiffsightError(f"{meta_path} has format {meta.get('format')!r}; this diffsight reads {FORMAT!r}")
    known = {f.name for f in fields(SeriesConfig)}
    config = SeriesConfig(**{k: v for k, v in meta["config"].items() if k in known})
    columns = tuple(meta["columns"])
    denoiser = build_denoiser(config, len(columns), meta["sigma_data"], meta["sigma_min"], meta["sigma_max"])
    try:
        denoiser.load_state_dict(load_file(weights_path))
    except RuntimeError as err:
        raise DiffsightError(f"{weights_path} does not fit the network that {meta_path} describes: {err}") from None
    denoiser.eval()
    return SeriesModel(
        config=config,
        denoiser=denoiser,
        columns=columns,
        mean=np.asarray(meta["mean"], dtype=np.float64),
        std=np.asarray(meta["std"], dtype=np.float64),
        local_scale=np.asarray(meta["local_scale"], dtype=np.float64),
        window=int(meta["window"]),
        train_length=int(meta["train_length"]),
        calibration=float(meta["calibration"]) if meta.get("calibration") is not None else None,
        spread=float(meta.get("spread", 1.0)),
        context=int(meta.get("context", 0)),
        residual_scale=np.asarray(meta["residual_scale"], dtype=np.float64) if "residual_scale" in meta else None,
        selected_step=meta.get("selected_step"),
        seasonal=_coefficients(meta, "seasonal", (len(columns), 2), meta_path),
        drift=_coefficients(meta, "drift", (len(columns),), meta_path),
        stack_weight=_unit_interval(meta.get("stack_weight", 1.0), "stack_weight", meta_path),
    )


def _unit_interval(value: Any, name: str, path: Path) -> float:
    if not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
        raise DiffsightError(f"{path}: {name!r} must be a number in [0, 1], got {value!r}")
    return float(value)


def _coefficients(meta: dict[str, Any], name: str, shape: tuple[int, ...], path: Path) -> np.ndarray | None:
    """A per-column array of a model's metadata (None for models saved before it existed), checked."""
    if meta.get(name) is None:
        return None
    try:
        coef = np.asarray(meta[name], dtype=np.float64)
    except (TypeError, ValueError):
        coef = np.full(1, np.nan)
    if coef.shape != shape or not np.isfinite(coef).all():
        raise DiffsightError(f"{path}: {name!r} must be finite numbers of shape {shape}, got {meta[name]!r:.80}")
    return coef
