"""Settings of the tabular diffusion model: a typed, frozen dataclass saved as JSON beside the weights."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from diffsight.errors import DiffsightError, unknown_name

__all__ = ["LINEAR_PRIORS", "TableDiffusionConfig"]

LINEAR_PRIORS = ("residual", "input", "none")
CALIBRATION_GIVEN = ("others", "training")


@dataclass(frozen=True)
class TableDiffusionConfig:
    """How the model is built, trained, sampled and calibrated.

    Network: ``hidden``, ``depth``, ``dropout`` of :class:`~diffsight.tasks.tables.network.TableBackbone`.
    Training: ``steps`` AdamW steps of ``batch_size`` rows (drawn with replacement) at learning rate ``lr``
    (linear warm-up over the first 2%, then cosine decay), EMA of the weights with ``ema_decay``; log-normal
    training noise levels ``ln sigma ~ N(p_mean, p_std^2)`` (EDM); each row hides a random fraction
    ``r ~ U(0, 1)`` of its observed cells as targets, and with probability ``uncond_prob`` all of them (so the
    same network also draws whole rows); the given cells get Gaussian jitter of std ``cond_noise`` (in the
    normal coordinates; 0 by default: on the benchmark tables dropout and weight decay regularise better).
    Calibration: ``calibration_fraction`` of the observed numeric cells is withheld from training and used for
    split-conformal intervals; ``calibration_given`` says what a withheld cell is filled from: ``"others"``
    (every other known cell of its row, like a missing cell) or ``"training"`` (only the row's training cells,
    all its withheld cells hidden at once: the model before this option). Sampling: ``sampler`` from
    :data:`diffsight.sampling.SAMPLERS` over ``sampling_steps`` Karras steps from ``sigma_max``; ``samples``
    draws per row. ``seed`` fixes initial weights, masks and noise.

    Linear baseline (:mod:`~diffsight.tasks.tables.gaussian`): ``linear_prior`` is ``"none"`` (default: no
    Gaussian, the original model), ``"residual"`` (a Gaussian fitted by EM gives every row the conditional mean
    ``g`` and standard deviation ``s`` of its hidden coordinates; the network sees them and the diffusion runs
    over the standardised residual ``(x - g) / s``, so an untrained network already draws from the Gaussian
    conditional) or ``"input"`` (``g`` and ``s`` are only extra inputs; the diffusion runs over ``x``). On
    near-linear tables ``"residual"`` is far better, on small non-linear ones worse (BENCHMARKS.md).
    ``prior_ridge`` is the Gaussian's diagonal ridge relative to its mean variance. ``prior_folds``: during
    training a row's ``g`` and ``s`` come from a Gaussian fitted without the row's fold (cross-fitting, so the
    network learns how good the baseline is on rows it did not see, as at imputation time); 0 or 1 = no folds.

    Point estimate (:mod:`~diffsight.tasks.tables.stacking`): with ``stack_linear`` (default), a numeric cell's
    filled value is ``w * (mean of its draws) + (1 - w) * (its linear fill)``, the linear fill being the
    conditional mean under a Gaussian fitted by EM to the standardised columns in their own units, and ``w`` in
    [0, 1] fitted on the calibration cells (stacked regression). Off: the mean of the draws alone.
    """

    hidden: int = 128
    depth: int = 3
    dropout: float = 0.2
    steps: int = 1500
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.05
    ema_decay: float = 0.995
    p_mean: float = -1.2
    p_std: float = 1.2
    sigma_data: float = 1.0
    sigma_min: float = 0.002
    sigma_max: float = 40.0
    uncond_prob: float = 0.1
    cond_noise: float = 0.0
    calibration_fraction: float = 0.1
    calibration_given: str = "others"
    sampler: str = "heun"
    sampling_steps: int = 18
    samples: int = 50
    seed: int = 0
    linear_prior: str = "none"
    prior_ridge: float = 0.01
    prior_folds: int = 5
    stack_linear: bool = True

    def __post_init__(self) -> None:
        positive = {
            "hidden": self.hidden,
            "depth": self.depth,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "sampling_steps": self.sampling_steps,
        }
        bad = [f"{k}={v}" for k, v in positive.items() if not isinstance(v, int) or v < 1]
        if bad:
            raise DiffsightError(f"these settings must be positive integers: {', '.join(bad)}")
        if not isinstance(self.samples, int) or self.samples < 2:
            raise DiffsightError(f"samples must be an integer >= 2 (intervals need several draws), got {self.samples}")
        if not 0.0 <= self.calibration_fraction < 0.5:
            raise DiffsightError(f"calibration_fraction must lie in [0, 0.5), got {self.calibration_fraction}")
        if not 0.0 <= self.uncond_prob <= 1.0 or not 0.0 <= self.dropout < 1.0 or self.cond_noise < 0:
            raise DiffsightError("uncond_prob must lie in [0, 1], dropout in [0, 1) and cond_noise >= 0")
        if self.calibration_given not in CALIBRATION_GIVEN:
            raise unknown_name("calibration_given", str(self.calibration_given), list(CALIBRATION_GIVEN))
        if self.linear_prior not in LINEAR_PRIORS:
            raise unknown_name("linear prior", str(self.linear_prior), list(LINEAR_PRIORS))
        if self.prior_ridge < 0 or not isinstance(self.prior_folds, int) or self.prior_folds < 0:
            raise DiffsightError(
                f"need prior_ridge >= 0 and prior_folds >= 0, got {self.prior_ridge}, {self.prior_folds}"
            )
        if not isinstance(self.stack_linear, bool):
            raise DiffsightError(f"stack_linear must be true or false, got {self.stack_linear!r}")
        if self.lr <= 0 or not 0.0 <= self.ema_decay < 1.0 or not 0 < self.sigma_min < self.sigma_max:
            raise DiffsightError("need lr > 0, ema_decay in [0, 1) and 0 < sigma_min < sigma_max")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TableDiffusionConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DiffsightError(f"unknown table model settings {unknown}; known: {sorted(known)}")
        return cls(**data)

    def replace(self, **changes: Any) -> TableDiffusionConfig:
        """A copy with ``changes`` applied (``None`` values are ignored, for CLI overrides)."""
        data = self.to_json()
        data.update({k: v for k, v in changes.items() if v is not None})
        return TableDiffusionConfig.from_json(data)
