"""The work behind ``/v1/reconstruct``, ``/v1/impute`` and ``/v1/series/score``, run in a worker thread.

All are thin shells over the task layer: reconstruction builds the task's operator with
:func:`diffsight.tasks.image_job.build_operator` and solves with :func:`diffsight.tasks.posterior.reconstruct`
(the same calls as ``diffsight reconstruct``); imputation fits :class:`diffsight.tasks.tables.TabularDiffusion`
on the posted table and fills it (as ``diffsight impute`` does); series scoring fits
:func:`diffsight.tasks.series.fit_series` and runs :class:`diffsight.tasks.series.StreamScorer` over the rows
(as ``diffsight watch --train`` does). The job is checked before every network evaluation (images), training
step (tables), every 100 training steps and every scored row (series), so a disconnect or the time limit stops
the work.
"""

from __future__ import annotations

import dataclasses
import io
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from diffsight.errors import DiffsightError
from diffsight.models.folder import LoadedModel
from diffsight.serve.cancel import CancellableDenoiser, Job
from diffsight.serve.images import decode_image
from diffsight.serve.render import heatmap_uri, image_uri
from diffsight.serve.schemas import (
    MAX_IMPUTE_COLUMNS,
    MAX_IMPUTE_ROWS,
    MAX_SERIES_COLUMNS,
    MAX_SERIES_ROWS,
    ImputeRequest,
    ReconstructRequest,
    SeriesScoreRequest,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TableTooLarge", "parse_series", "parse_table", "run_impute", "run_reconstruct", "run_series_score"]


# --- images -----------------------------------------------------------------------------------------------------


def _nested(values: Any, ndim: int, dtype: Any = np.float32) -> np.ndarray | None:
    """Nested lists as an array of ``ndim`` dimensions, or None when they are ragged."""
    try:
        arr = np.asarray(values, dtype=dtype)
    except ValueError:  # numpy refuses inhomogeneous nesting
        return None
    return arr if arr.ndim == ndim else None


def _finite(value: float, digits: int) -> float | None:
    return round(value, digits) if math.isfinite(value) else None


def _input_image(
    body: ReconstructRequest, shape: tuple[int, ...], *, what: str, max_side: int, max_bytes: int
) -> torch.Tensor:
    """The posted image (``image`` or ``array``) as (1, C, H, W) on the grid ``shape`` = (C, H, W)."""
    if body.image is not None:
        return decode_image(body.image, shape, where="image", max_side=max_side, max_bytes=max_bytes)[None]
    arr = _nested(body.array, 3)
    if arr is None or tuple(arr.shape) != tuple(shape):
        got = "ragged nested lists" if arr is None else f"shape {tuple(arr.shape)}"
        raise DiffsightError(f"array: {what} must be (C, H, W) = {tuple(shape)} floats in [-1, 1], got {got}")
    return torch.from_numpy(arr)[None]  # (1, C, H, W)


def _mask(body: ReconstructRequest, height: int, width: int, *, max_side: int, max_bytes: int) -> torch.Tensor:
    """The inpainting mask (H, W): 1 = known. PNG: bright pixels (>= 128) are known; array: nonzero is known."""
    if isinstance(body.mask, str):
        grey = decode_image(body.mask, (1, height, width), where="mask", max_side=max_side, max_bytes=max_bytes)
        known = grey[0] >= 0.0  # [-1, 1]: 0 is pixel value 127.5
    else:
        arr = _nested(body.mask, 2)
        if arr is None or tuple(arr.shape) != (height, width):
            got = "ragged nested lists" if arr is None else f"shape {tuple(arr.shape)}"
            raise DiffsightError(
                f"mask: the model works on {height}x{width} images; send (H, W) = ({height}, {width}), got {got}"
            )
        known = torch.from_numpy(arr) != 0
    if bool(known.all()):
        raise DiffsightError("mask: the mask hides nothing: mark the missing pixels with 0 (nonzero = known)")
    if not bool(known.any()):
        raise DiffsightError("mask: the mask hides every pixel: nothing is observed; mark known pixels as nonzero")
    return known.float()


def run_reconstruct(
    model: LoadedModel, body: ReconstructRequest, job: Job, *, max_side: int, max_bytes: int
) -> dict[str, Any]:
    """POST /v1/reconstruct: K posterior samples -> mean, per-pixel std, and (optionally) calibrated intervals."""
    from diffsight.tasks.baselines import baseline_reconstruction, psnr, ssim
    from diffsight.tasks.conformal import coverage_report
    from diffsight.tasks.image_job import DEFAULT_METHODS, ReconstructJob, build_operator, calibrate_on_heldout
    from diffsight.tasks.posterior import reconstruct

    start = time.perf_counter()
    event = tuple(model.event_shape)
    c, h, w = event
    spec = ReconstructJob(
        model=model.name,
        task=body.task,
        input=Path("request"),
        out=Path("request.png"),
        samples=body.samples,
        uncertainty=body.intervals,
        seed=body.seed,
        method=body.method,
        steps=body.steps,
        noise=body.noise_sigma,
        factor=body.factor,
        blur=body.blur,
        angles=body.angles,
        acceleration=body.acceleration,
        simulate=body.simulate,
        alpha=1.0 - body.coverage,
    )
    if body.task == "superres" and (h % body.factor or w % body.factor):
        raise DiffsightError(f"factor: {body.factor} does not divide the model's {h}x{w} images")
    if body.task == "superres" and not body.simulate:
        grid = (c, h // body.factor, w // body.factor)
        what = f"a {grid[1]}x{grid[2]} low-resolution measurement (the model's {h}x{w} over factor {body.factor})"
    else:
        grid = event
        what = "the clean image" if body.simulate else "the measured image"
    given = _input_image(body, grid, what=what, max_side=max_side, max_bytes=max_bytes)  # (1, C, h, w)
    if body.task == "inpaint" and body.mask is None and not body.simulate:
        raise DiffsightError("mask: inpainting a measured image needs the mask of known pixels (nonzero = known)")
    marker: torch.Tensor | None = None
    if body.task == "inpaint" and body.mask is not None:
        known = _mask(body, h, w, max_side=max_side, max_bytes=max_bytes)
        marker = torch.where(known.bool(), 0.0, math.nan).expand(1, c, h, w)  # NaN = unknown, read by build_operator
    truth: torch.Tensor | None = None
    if body.simulate:
        truth = given
        op = build_operator(spec, event, marker)
        y = op.measure(truth, generator=torch.Generator().manual_seed(body.seed))
    else:
        y = given
        op = build_operator(spec, event, marker if body.task == "inpaint" else y)
        if body.task == "inpaint":
            y = y * op.mask  # type: ignore[attr-defined]
    method = body.method or DEFAULT_METHODS[body.task]
    options = {} if body.steps is None else {"steps": body.steps}
    job.check()
    guarded = dataclasses.replace(model, denoiser=CancellableDenoiser(model.denoiser, job))
    with torch.no_grad():
        rec = reconstruct(
            guarded.denoiser,
            op,
            y,
            method=method,
            samples=body.samples,
            generator=torch.Generator().manual_seed(body.seed),
            **options,
        )
    mean = rec.mean.clamp(-1, 1)
    out: dict[str, Any] = {
        "model": model.name,
        "task": body.task,
        "method": method,
        "samples": body.samples,
        "mean": image_uri(mean[0]),
        "std": heatmap_uri(rec.std[0].mean(0)) if body.samples > 1 else None,
        "std_max": float(rec.std[0].mean(0).max()) if body.samples > 1 else None,
        "measurement": image_uri(y[0].clamp(-1, 1))
        if not y.is_complex() and y.ndim == 4 and body.task != "ct"
        else None,
        "lower": None,
        "upper": None,
        "nfe": rec.nfe,
    }
    if truth is not None:
        base = baseline_reconstruction(op, y).clamp(-1, 1)
        out["psnr"] = _finite(psnr(mean, truth), 2)
        out["ssim"] = _finite(ssim(mean, truth), 4)
        out["baseline_psnr"] = _finite(psnr(base, truth), 2)
        out["baseline_ssim"] = _finite(ssim(base, truth), 4)
    if body.intervals:
        with torch.no_grad():
            calibration = calibrate_on_heldout(guarded, op, method, spec, options)
        if calibration is None:
            out["intervals_note"] = f"not available: {model.name} has no held-out images to calibrate on"
        else:
            lo, hi = calibration.intervals(rec.mean, rec.std)
            out["lower"], out["upper"] = image_uri(lo[0].clamp(-1, 1)), image_uri(hi[0].clamp(-1, 1))
            out["coverage"] = calibration.coverage
            out["interval_scale"] = round(calibration.scale, 4)
            out["calibration_images"] = calibration.n_calibration
            if truth is not None:
                out["observed_coverage"] = round(coverage_report(calibration, rec.mean, rec.std, truth).empirical, 4)
    out["seconds"] = round(time.perf_counter() - start, 4)
    return out


# --- tables -----------------------------------------------------------------------------------------------------


class TableTooLarge(Exception):
    """The posted table has more rows or columns than the server imputes (the app answers 413)."""


def parse_table(text: str) -> pd.DataFrame:
    """The posted CSV as a DataFrame, refused when over :data:`MAX_IMPUTE_ROWS` rows or
    :data:`MAX_IMPUTE_COLUMNS` columns (:class:`TableTooLarge`) or unreadable (:class:`DiffsightError`)."""
    import pandas as pd

    from diffsight.tasks.tables import check_table

    try:
        frame = pd.read_csv(io.StringIO(text))
    except pd.errors.EmptyDataError:
        raise DiffsightError("csv: the table is empty; send a header row and data rows") from None
    except (pd.errors.ParserError, ValueError) as err:
        reason = str(err).strip().splitlines()[0][:200]
        raise DiffsightError(f"csv: not a readable CSV ({reason}); check its delimiter and quoting") from None
    if frame.shape[0] > MAX_IMPUTE_ROWS:
        raise TableTooLarge(
            f"csv: the table has {frame.shape[0]} rows; this server imputes at most {MAX_IMPUTE_ROWS}: split it "
            "or use `diffsight impute`"
        )
    if frame.shape[1] > MAX_IMPUTE_COLUMNS:
        raise TableTooLarge(
            f"csv: the table has {frame.shape[1]} columns; this server imputes at most {MAX_IMPUTE_COLUMNS}: drop "
            "some or use `diffsight impute`"
        )
    return check_table(frame)


def _cell(value: Any) -> Any:
    """A JSON value for one table cell (numpy scalars to Python; NaN and infinities to null)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run_impute(frame: pd.DataFrame, body: ImputeRequest, job: Job) -> dict[str, Any]:
    """POST /v1/impute: fit on the table's observed cells, fill the empty ones, and list per-cell intervals."""
    from diffsight.tasks.tables import TableDiffusionConfig, TabularDiffusion, infer_columns

    start = time.perf_counter()
    infer_columns(frame, body.categorical)  # refuse unusable columns before any training
    if not frame.isna().to_numpy().any():
        raise DiffsightError("csv: the table has no missing values: leave the cells to fill empty (or write NA)")
    config = TableDiffusionConfig(seed=body.seed, samples=body.samples, steps=body.steps)
    fitted = TabularDiffusion.fit(
        frame, categorical=body.categorical, config=config, progress=lambda _step, _total, _loss: job.check()
    )
    job.check()
    result = fitted.impute(frame, samples=body.samples, coverage=body.coverage, seed=body.seed)
    calibrated = math.isfinite(result.scale)
    intervals: list[dict[str, Any]] | None = None
    if body.intervals:
        intervals = []
        rows, cols = np.nonzero(result.missing)
        for r, j in zip(rows.tolist(), cols.tolist(), strict=True):
            numeric = fitted.columns[j].kind == "numeric"
            intervals.append(
                {
                    "row": r,
                    "column": str(frame.columns[j]),
                    "value": _cell(result.filled.iat[r, j]),
                    "lower": _cell(result.lower.iat[r, j]) if numeric and calibrated else None,
                    "upper": _cell(result.upper.iat[r, j]) if numeric and calibrated else None,
                    "probability": None if numeric else _cell(result.probability.iat[r, j]),
                }
            )
    info = fitted.info
    return {
        "filled_csv": result.filled.to_csv(index=False),
        "intervals": intervals,
        "rows": int(frame.shape[0]),
        "columns": [str(c) for c in frame.columns],
        "filled_cells": int(result.missing.sum()),
        "samples": result.samples,
        "coverage": result.coverage,
        "calibrated": calibrated,
        "interval_scale": round(result.scale, 4) if calibrated else None,
        "training": {
            "steps": config.steps,
            "observed_cells": int(info["observed_cells"]),
            "calibration_cells": int(info["calibration_cells"]),
            "final_loss": _cell(float(info["final_loss"])),
            "seconds": float(info["fit_seconds"]),
        },
        "seconds": round(time.perf_counter() - start, 4),
    }


# --- series -----------------------------------------------------------------------------------------------------


def parse_series(body: SeriesScoreRequest) -> Any:
    """The posted series (``csv`` or ``values``) as a :class:`~diffsight.tasks.series.SeriesData`, refused when
    over :data:`MAX_SERIES_ROWS` rows or :data:`MAX_SERIES_COLUMNS` columns (:class:`TableTooLarge`)."""
    import pandas as pd

    from diffsight.tasks.series import series_from_array, series_from_frame

    if body.values is not None:
        widths = sorted({len(row) for row in body.values})
        if len(widths) > 1:
            raise DiffsightError(f"values: every row needs the same number of values; got rows of {widths} values")
        rows, cols = len(body.values), widths[0]
    else:
        try:
            frame = pd.read_csv(io.StringIO(str(body.csv)))
        except pd.errors.EmptyDataError:
            raise DiffsightError("csv: the series is empty; send a header row and one row per time step") from None
        except (pd.errors.ParserError, ValueError) as err:
            reason = str(err).strip().splitlines()[0][:200]
            raise DiffsightError(f"csv: not a readable CSV ({reason}); check its delimiter and quoting") from None
        rows, cols = frame.shape[0], frame.shape[1] - (body.time_column is not None)
    if rows > MAX_SERIES_ROWS:
        raise TableTooLarge(
            f"the series has {rows} rows; this server scores at most {MAX_SERIES_ROWS}: send the "
            "recent part, or use `diffsight watch`"
        )
    if cols > MAX_SERIES_COLUMNS:
        raise TableTooLarge(f"the series has {cols} columns; this server scores at most {MAX_SERIES_COLUMNS}")
    if body.values is not None:
        data = np.asarray([[math.nan if v is None else v for v in row] for row in body.values], dtype=np.float64)
        return series_from_array(data, [f"x{k}" for k in range(cols)])
    return series_from_frame(frame, body.time_column)


def run_series_score(data: Any, body: SeriesScoreRequest, job: Job) -> dict[str, Any]:
    """POST /v1/series/score: fit on the series (or its first ``train_rows``), then score every window."""
    from diffsight.tasks.series import SeriesConfig, SeriesData, StreamScorer, fit_series, guess_period

    start = time.perf_counter()
    train = data
    if body.train_rows is not None:
        if body.train_rows > data.length:
            raise DiffsightError(f"train_rows: the series has only {data.length} rows, got {body.train_rows}")
        train = SeriesData(data.values[: body.train_rows], data.columns, None, None)
    period = body.period if body.period is not None else guess_period(train)
    config = SeriesConfig(window=body.window, period=period, train_steps=body.steps, seed=body.seed)
    model = fit_series(train, config, progress=lambda _step, _loss: job.check())
    job.check()
    generator = torch.Generator().manual_seed(body.seed)
    scorer = StreamScorer(model, samples=body.samples, start=0, generator=generator)
    scores = []
    for row in data.values:
        job.check()
        result = scorer.push(row)
        if result is None:
            continue
        scores.append(
            {
                "index": result.index,
                "z": _cell(result.z),
                "score": _cell(result.score),
                "flag": bool(result.z > body.threshold),
                "median": [_cell(v) for v in result.median],
                "lower": [_cell(v) for v in result.lower],
                "upper": [_cell(v) for v in result.upper],
            }
        )
    return {
        "columns": list(data.columns),
        "window": model.window,
        "period": period,
        "threshold": body.threshold,
        "scores": scores,
        "flagged": [s["index"] for s in scores if s["flag"]],
        "training": {"rows": train.length, "steps": body.steps, "calibration": _cell(float(model.calibration or 0))},
        "seconds": round(time.perf_counter() - start, 4),
    }
