"""``TabularDiffusion``: fit a diffusion model on a table, draw new rows, fill missing cells with intervals.

    model = TabularDiffusion.fit(frame)                  # numeric + categorical columns, missing cells allowed
    result = model.impute(frame, samples=50)             # K draws per row -> point estimate + 90% intervals
    rows = model.synthesize(100, seed=0)                 # new rows
    model.save("model-dir"); TabularDiffusion.load("model-dir")

Fitting withholds ``calibration_fraction`` of the observed numeric cells from training, fills them from the
rest of their row, and keeps the conformity scores (:mod:`~diffsight.tasks.tables.conformal`): the intervals of
:meth:`TabularDiffusion.impute` are split-conformal at any requested coverage. The same cells fit the weight
that stacks the mean of the draws with a linear fill (:mod:`~diffsight.tasks.tables.stacking`) into the point
estimate, and a second set of scores measures the distance from that stacked value instead of the draws' mean
(each cell's with a weight fitted on the other half of the cells: cross-fitting). Saved as a
folder with ``model.safetensors`` (weights, calibration scores, linear fill) and ``table.json`` (settings and
transforms); nothing is pickled.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save

from diffsight.atomic import write_bytes_atomic
from diffsight.errors import DiffsightError, unknown_name
from diffsight.tasks.tables.config import TableDiffusionConfig
from diffsight.tasks.tables.conformal import conformal_scale, conformity_scores, interval_from_samples
from diffsight.tasks.tables.draw import ConditionMethod, draw_rows
from diffsight.tasks.tables.fit import ProgressFn, build_denoiser, train_denoiser
from diffsight.tasks.tables.gaussian import GaussianPrior
from diffsight.tasks.tables.schema import ColumnSpec, check_table, infer_columns
from diffsight.tasks.tables.stacking import LinearFill, stack_weight
from diffsight.tasks.tables.transforms import EncodedTable, TableEncoder

__all__ = ["ImputationResult", "TabularDiffusion"]

FORMAT = "diffsight-table-model"
VERSION = 1
WEIGHTS = "model.safetensors"
META = "table.json"
PointEstimate = Literal["mean", "median"]


@dataclass(frozen=True)
class ImputationResult:
    """Filled table and per-cell uncertainty, all shaped like the input table.

    Attributes:
        filled: the table with every missing cell filled (numeric: the mean of the draws stacked with the linear
            fill, or the median of the draws; categorical: the most frequent level). Observed cells are unchanged.
        lower, upper: interval bounds of filled numeric cells at ``coverage`` (NaN elsewhere).
        probability: share of draws that chose the filled level, for filled categorical cells (NaN elsewhere).
        missing: (N, n_columns) which cells were filled.
        coverage: the stated coverage of the intervals.
        scale: ``lam_hat``, the interval half-width in standard deviations of the draws (1.645 = the draws were
            Gaussian and calibrated for 90%; ``inf`` when too few cells were withheld to calibrate at this coverage).
        samples: K, draws per row.
        seconds: wall time of the imputation.
        stack_weight: ``w``, the weight of the draws' mean in the numeric point estimate (1.0: draws alone).
    """

    filled: pd.DataFrame
    lower: pd.DataFrame
    upper: pd.DataFrame
    probability: pd.DataFrame
    missing: np.ndarray
    coverage: float
    scale: float
    samples: int
    seconds: float
    stack_weight: float = 1.0


class TabularDiffusion:
    """A fitted table model: column transforms, the conditional denoiser and its calibration scores."""

    def __init__(
        self,
        encoder: TableEncoder,
        denoiser: Any,
        config: TableDiffusionConfig,
        scores: np.ndarray,
        info: dict[str, Any] | None = None,
        prior: GaussianPrior | None = None,
        linear: LinearFill | None = None,
        weight: float = 1.0,
        stacked_scores: np.ndarray | None = None,
    ) -> None:
        if config.linear_prior != "none" and prior is None:
            raise DiffsightError(f"linear_prior={config.linear_prior!r} needs the fitted Gaussian prior")
        if not 0.0 <= weight <= 1.0 or (weight < 1.0 and linear is None):
            raise DiffsightError(f"the stacking weight must lie in [0, 1] and needs the linear fill, got {weight}")
        self.prior = prior
        self.linear = linear
        self.weight = float(weight)
        self.encoder = encoder
        self.denoiser = denoiser
        self.config = config
        self.scores = np.asarray(scores, dtype=np.float64)
        self.stacked_scores = np.asarray(self.scores if stacked_scores is None else stacked_scores, dtype=np.float64)
        self.info = dict(info or {})

    @property
    def columns(self) -> list[ColumnSpec]:
        return self.encoder.columns

    # --- fitting ----------------------------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        *,
        categorical: Iterable[str] = (),
        config: TableDiffusionConfig | None = None,
        progress: ProgressFn | None = None,
    ) -> TabularDiffusion:
        """Fit on the observed cells of ``frame`` (missing cells are simply not used).

        Args:
            frame: the table; numeric and categorical (text, bool, category) columns.
            categorical: numeric columns to treat as categories.
            config: settings (defaults: :class:`TableDiffusionConfig`).
            progress: ``progress(step, total, loss)`` after every training step.
        """
        config = config or TableDiffusionConfig()
        started = time.perf_counter()
        specs = infer_columns(frame, categorical)
        calib = _calibration_cells(frame, specs, config)
        encoder = TableEncoder.fit(frame.mask(pd.DataFrame(calib, index=frame.index, columns=frame.columns)), specs)
        encoded = encoder.encode(frame)
        train_obs = encoded.observed & ~calib
        prior, fold_priors, fold = None, None, None
        if config.linear_prior != "none":  # the linear baseline, fitted on the training cells only
            coord_obs = train_obs[:, encoder.coord_column]  # (N, n_columns) -> (N, D)
            prior = GaussianPrior.fit(encoded.values, coord_obs, ridge=config.prior_ridge)
            fold_priors, fold = _fold_priors(encoded.values, coord_obs, config)
        denoiser, losses = train_denoiser(
            encoded.values,
            train_obs,
            encoder.coord_column,
            config,
            prior=prior,
            fold_priors=fold_priors,
            fold=fold,
            progress=progress,
        )
        linear = None
        if config.stack_linear and (train_obs.sum(axis=0) >= 2).all():  # EM needs 2 values of every column
            linear = LinearFill.fit(frame, encoder, encoded, train_obs, ridge=config.prior_ridge)
        model = cls(encoder, denoiser, config, np.zeros(0), prior=prior, linear=linear)
        model.scores, model.stacked_scores, model.weight = model._calibrate(frame, encoded, train_obs, calib)
        model.info = {
            "rows": int(len(frame)),
            "observed_cells": int(encoded.observed.sum()),
            "calibration_cells": int(calib.sum()),
            "final_loss": float(np.mean(losses[-max(1, len(losses) // 20) :])),
            "fit_seconds": round(time.perf_counter() - started, 2),
            "stack_weight": model.weight,
        }
        return model

    def _calibrate(
        self, frame: pd.DataFrame, encoded: EncodedTable, train_obs: np.ndarray, calib: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """Calibrate on the withheld cells.

        With ``config.calibration_given == "others"`` every withheld cell is filled on its own from all the other
        known cells of its row (the row's other withheld cells included: when filling, they are known too), as a
        missing cell is filled from all the known cells of its row; with ``"training"`` all the withheld cells of
        a row are filled at once from the row's training cells (harder than filling a missing cell: the intervals
        come out conservative where a row's other cells matter).

        Returns the conformity scores around the draws' mean, those around the stacked value, and the stacking
        weight fitted on all the cells (1.0 and the first scores again without a linear fill). A cell's stacked
        score uses the weight fitted on the other half of the cells (two random halves), so that no cell both
        chooses the weight and scores it.
        """
        if not calib.any():
            return np.zeros(0), np.zeros(0), 1.0
        if self.config.calibration_given == "others":  # one filled row per withheld cell
            cell_row, j = np.nonzero(calib)
            rows, r = cell_row, np.arange(cell_row.size)
            known = encoded.observed[rows].copy()
            known[r, j] = False
        else:  # one filled row per row with withheld cells
            rows = np.flatnonzero(calib.any(axis=1))
            r, j = np.nonzero(calib[rows])
            known = train_obs[rows]
        values = encoded.values
        generator = torch.Generator().manual_seed(self.config.seed + 2)
        given = known[:, self.encoder.coord_column]  # (R, n_columns) -> (R, D)
        draws = draw_rows(
            self.denoiser, values[rows], given, self.config.samples, self.config, generator=generator, prior=self.prior
        )
        coord = np.asarray([self.encoder.slices[c].start for c in j])
        raw, z_lo, z_hi = np.empty(r.size), np.empty(r.size), np.empty(r.size)
        for col in np.unique(j):
            cells = j == col
            raw[cells] = pd.to_numeric(frame.iloc[rows[r[cells]], col]).to_numpy(dtype=np.float64)
            z_lo[cells], z_hi[cells] = self.encoder.numeric_range(int(col), raw[cells])
        scores = conformity_scores(draws[r, :, coord], z_lo, truth_upper=z_hi)
        if self.linear is None:
            return scores, scores, 1.0
        linear = self.linear.fill(self.linear.coordinates(frame, self.encoder, encoded)[rows], given)[r, coord]
        means = np.empty(r.size)
        for col in np.unique(j):
            cells = j == col
            means[cells] = self.encoder.decode_numeric(int(col), draws[r[cells], :, coord[cells]]).mean(axis=1)
        scale = self.linear.scale[coord]
        half = np.random.default_rng(self.config.seed + 5).random(r.size) < 0.5
        other = np.empty(r.size)  # each cell's weight, fitted on the other half
        for part in (half, ~half):
            other[~part] = stack_weight(means[part], linear[part], raw[part], scale[part])
        center = np.empty(r.size)
        for col in np.unique(j):
            cells = j == col
            stacked = other[cells] * means[cells] + (1.0 - other[cells]) * linear[cells]
            center[cells] = self.encoder.encode_numeric(int(col), stacked)
        stacked_scores = conformity_scores(draws[r, :, coord], z_lo, center, truth_upper=z_hi)
        return scores, stacked_scores, stack_weight(means, linear, raw, scale)

    # --- using the model --------------------------------------------------------------------------------------

    def impute(
        self,
        frame: pd.DataFrame,
        *,
        samples: int | None = None,
        coverage: float = 0.9,
        point: PointEstimate = "mean",
        seed: int | None = None,
        method: ConditionMethod = "conditional",
        stack: bool = True,
    ) -> ImputationResult:
        """Fill every missing cell of ``frame`` from K draws conditioned on the observed cells of its row.

        Args:
            frame: a table with the fitted columns, in order.
            samples: K draws per row (default ``config.samples``).
            coverage: stated coverage of the intervals (split-conformal on the withheld cells).
            point: ``"mean"`` (minimises squared error) or ``"median"`` of the draws, for numeric cells.
            seed: seed of the draws (default ``config.seed``).
            method: ``"conditional"`` or ``"repaint"`` (:mod:`~diffsight.tasks.tables.draw`).
            stack: for ``point="mean"``, stack the draws' mean with the linear fill using the fitted weight
                (the default when the model has one); ``False``: the mean of the draws alone.

        Raises:
            DiffsightError: the table has no missing cells, other columns than the model, or unseen levels.
        """
        if point not in ("mean", "median"):
            raise unknown_name("point estimate", str(point), ["mean", "median"])
        k = self.config.samples if samples is None else int(samples)
        if k < 2:
            raise DiffsightError(f"samples must be >= 2 to give intervals, got {k}")
        started = time.perf_counter()
        frame = check_table(frame)
        encoded = self.encoder.encode(frame)
        missing = ~encoded.observed
        if not missing.any():
            raise DiffsightError("the table has no missing values: there is nothing to fill (empty cells are missing)")
        stacked = stack and point == "mean" and self.linear is not None
        weight = self.weight if stacked else 1.0
        scores = self.stacked_scores if stacked else self.scores
        lam = conformal_scale(scores, coverage) if scores.size else math.inf
        rows = np.flatnonzero(missing.any(axis=1))
        generator = torch.Generator().manual_seed(self.config.seed if seed is None else seed)
        given = encoded.observed[rows][:, self.encoder.coord_column]
        draws = draw_rows(
            self.denoiser,
            encoded.values[rows],
            given,
            k,
            self.config,
            generator=generator,
            method=method,
            prior=self.prior,
        )
        linear = None
        if stacked:
            linear = self.linear.fill(self.linear.coordinates(frame, self.encoder, encoded)[rows], given)  # type: ignore[union-attr]
        filled = frame.copy()
        lower = pd.DataFrame(np.nan, index=frame.index, columns=frame.columns)
        upper, probability = lower.copy(), lower.copy()
        for j, spec in enumerate(self.encoder.columns):
            local = np.flatnonzero(missing[rows, j])  # rows (within `rows`) missing column j
            if local.size == 0:
                continue
            target = rows[local]
            sl = self.encoder.slices[j]
            col = frame.columns[j]
            if spec.kind == "numeric":
                z = draws[local, :, sl.start]  # (cells, K)
                x = self.encoder.decode_numeric(j, z)
                est = x.mean(axis=1) if point == "mean" else self.encoder.decode_numeric(j, np.median(z, axis=1))
                center = None
                if linear is not None:
                    est = weight * est + (1.0 - weight) * linear[local, sl.start]
                    center = self.encoder.encode_numeric(j, est)
                lo, hi = interval_from_samples(z, lam, center)
                if not pd.api.types.is_float_dtype(filled[col].dtype):
                    filled[col] = filled[col].astype(np.float64)
                filled.iloc[target, j] = est
                lo, hi = self.encoder.decode_numeric(j, lo), self.encoder.decode_numeric(j, hi)
                if center is not None:  # at a column's extremes the clipped transform can round it just outside
                    lo, hi = np.minimum(lo, est), np.maximum(hi, est)
                lower.iloc[target, j] = lo
                upper.iloc[target, j] = hi
            else:
                codes = self.encoder.decode_codes(j, draws[local, :, sl])  # (cells, K)
                levels = self.encoder.levels[spec.name]
                counts = np.stack([(codes == c).sum(axis=1) for c in range(len(levels))], axis=1)  # (cells, C)
                best = counts.argmax(axis=1)
                if isinstance(filled[col].dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(filled[col].dtype):
                    filled[col] = filled[col].astype(object)
                filled.iloc[target, j] = pd.Series([levels[b] for b in best], dtype=object).to_numpy()
                probability.iloc[target, j] = counts[np.arange(best.size), best] / k
        return ImputationResult(
            filled=filled,
            lower=lower,
            upper=upper,
            probability=probability,
            missing=missing,
            coverage=float(coverage),
            scale=float(lam),
            samples=k,
            seconds=time.perf_counter() - started,
            stack_weight=weight,
        )

    def synthesize(self, n: int, *, seed: int | None = None) -> pd.DataFrame:
        """``n`` new rows drawn from the model (every cell generated)."""
        if not isinstance(n, int) or n < 1:
            raise DiffsightError(f"the number of rows to draw must be a positive integer, got {n!r}")
        generator = torch.Generator().manual_seed(self.config.seed if seed is None else seed)
        zeros = np.zeros((n, self.encoder.dim))
        draws = draw_rows(
            self.denoiser, zeros, zeros.astype(bool), 1, self.config, generator=generator, prior=self.prior
        )
        return self.encoder.decode(draws[:, 0, :])

    # --- persistence ------------------------------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        """Write ``folder/model.safetensors`` and ``folder/table.json`` (each atomically)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {f"denoiser.{k}": v.detach().cpu().contiguous() for k, v in self.denoiser.state_dict().items()}
        tensors["calibration.scores"] = torch.as_tensor(self.scores, dtype=torch.float64)
        tensors["calibration.stacked_scores"] = torch.as_tensor(self.stacked_scores, dtype=torch.float64)
        if self.prior is not None:
            tensors.update(self.prior.to_tensors())
        if self.linear is not None:
            tensors.update(self.linear.to_tensors())
            tensors["linear.weight"] = torch.tensor(self.weight, dtype=torch.float64)
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "config": self.config.to_json(),
            "transform": self.encoder.to_json(),
            "info": self.info,
        }
        write_bytes_atomic(folder / WEIGHTS, save(tensors))
        write_bytes_atomic(folder / META, json.dumps(meta, indent=1).encode())
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> TabularDiffusion:
        """Load a folder written by :meth:`save` (safetensors + JSON only)."""
        folder = Path(folder)
        if not (folder / META).is_file() or not (folder / WEIGHTS).is_file():
            raise DiffsightError(f"{folder} is not a table model folder: it needs {META} and {WEIGHTS}")
        try:
            meta = json.loads((folder / META).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise DiffsightError(f"cannot read {folder / META}: {err}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise DiffsightError(f"{folder / META} is not a {FORMAT} version {VERSION} file")
        settings = dict(meta["config"])
        settings.setdefault("linear_prior", "none")  # saved before the option existed: the model had no prior
        settings.setdefault("stack_linear", False)  # saved before stacking: the mean of the draws alone
        settings.setdefault("calibration_given", "training")  # and calibrated from the training cells
        config = TableDiffusionConfig.from_json(settings)
        encoder = TableEncoder.from_json(meta["transform"])
        tensors = load_file(str(folder / WEIGHTS))
        denoiser = build_denoiser(encoder.dim, config)
        state = {k.removeprefix("denoiser."): v for k, v in tensors.items() if k.startswith("denoiser.")}
        prior = GaussianPrior.from_tensors(tensors) if config.linear_prior != "none" else None
        try:
            denoiser.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise DiffsightError(f"the weights in {folder / WEIGHTS} do not fit its table.json: {err}") from None
        scores = tensors.get("calibration.scores", torch.zeros(0)).numpy()
        linear = LinearFill.from_tensors(tensors) if config.stack_linear and "linear.weight" in tensors else None
        weight = float(tensors["linear.weight"]) if linear is not None else 1.0
        stacked_scores = (
            tensors["calibration.stacked_scores"].numpy() if "calibration.stacked_scores" in tensors else None
        )
        return cls(
            encoder,
            denoiser.eval().requires_grad_(False),
            config,
            scores,
            meta.get("info"),
            prior=prior,
            linear=linear,
            weight=weight,
            stacked_scores=stacked_scores,
        )


def _calibration_cells(frame: pd.DataFrame, specs: list[ColumnSpec], config: TableDiffusionConfig) -> np.ndarray:
    """(N, n_columns) numeric cells withheld from training for calibration; each column keeps >= 2 values."""
    observed = frame.notna().to_numpy()
    rng = np.random.default_rng(config.seed + 3)
    calib = observed & (rng.random(observed.shape) < config.calibration_fraction)
    for j, spec in enumerate(specs):
        if spec.kind != "numeric" or (observed[:, j] & ~calib[:, j]).sum() < 2:
            calib[:, j] = False
    return calib


def _fold_priors(
    values: np.ndarray, observed: np.ndarray, config: TableDiffusionConfig
) -> tuple[list[GaussianPrior] | None, np.ndarray | None]:
    """Gaussians fitted without each of ``prior_folds`` random folds of the rows, and the fold of every row.

    ``(None, None)`` when folds are off, or when some fold's complement leaves a coordinate with < 2 values.
    """
    k, n = config.prior_folds, values.shape[0]
    if k < 2 or n < 2 * k:
        return None, None
    fold = np.random.default_rng(config.seed + 4).permutation(n) % k
    if any((observed[fold != f].sum(axis=0) < 2).any() for f in range(k)):
        return None, None
    fitted = [GaussianPrior.fit(values[fold != f], observed[fold != f], ridge=config.prior_ridge) for f in range(k)]
    return fitted, fold
