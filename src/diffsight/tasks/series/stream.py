"""Streaming anomaly scores: how surprising is each new value given the window of values before it?

For every arriving row y_t the model forecasts it from the previous L-1 rows (the last step of a window hidden,
as in training's ``forecast`` pattern) with S samples. Two numbers come out:

- ``score``: the predictive CRPS of y_t (Gneiting & Raftery 2007, eq. 21; the unbiased "fair" estimator, so any
  sample count compares), averaged over columns, in units of each column's local scale;
- ``z``: the forecast error in predictive standard deviations, e_k = (y_k - median_k) / sd_k, combined over the
  K columns as sqrt(mean_k e_k^2) and divided by its root-mean-square c on training windows (the calibration).
  For a calibrated model, normal data and one column, z behaves like |N(0, 1)|: z > 3 about 0.3% of the time;
  a jump of 6 predictive standard deviations scores about 6.

:class:`StreamScorer` consumes rows one at a time and keeps only the last L-1 of them (bounded memory). Caveat:
the calibration windows were seen in training, so z-scores of new data run slightly high.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from diffsight.errors import DiffsightError
from diffsight.tasks.series.data import SeriesData
from diffsight.tasks.series.features import context_windows
from diffsight.tasks.series.impute import sample_windows
from diffsight.tasks.series.metrics import crps_samples
from diffsight.tasks.series.model import SeriesModel

__all__ = ["StreamScorer", "WindowScore", "calibrate", "forecast_scores"]


@dataclass(frozen=True)
class WindowScore:
    """The score of the window ending at time ``index`` (the row's absolute index): ``score`` is the raw CRPS
    (local-scale units), ``z`` the calibrated forecast error in standard deviations; ``median``/``lower``/``upper``
    the 90% forecast of the row."""

    index: int
    value: tuple[float, ...]
    score: float
    z: float
    median: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]


def forecast_scores(
    model: SeriesModel,
    zw: torch.Tensor,
    ow: torch.Tensor,
    starts: torch.Tensor,
    samples: int,
    generator: torch.Generator | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the last step of windows ``zw`` (B, K, L): raw CRPS scores (B,), uncalibrated errors
    sqrt(mean_k e_k^2) (B,), and the forecast draws (S, B, K) in z units."""
    visible = ow.clone()
    visible[:, :, -1] = False
    steps = model.config.stream_steps
    draws = sample_windows(model, zw, visible, starts, samples, generator, steps=steps)[..., -1].numpy()  # (S, B, K)
    y = zw[:, :, -1].numpy()
    seen = ow[:, :, -1].numpy()
    count = np.maximum(seen.sum(1), 1)
    crps = crps_samples(draws, y, fair=True) / model.local_scale  # (B, K)
    err = (y - np.median(draws, axis=0)) / np.maximum(draws.std(0, ddof=1), 1e-3 * model.local_scale)  # (B, K)
    return (crps * seen).sum(1) / count, np.sqrt((err**2 * seen).sum(1) / count), draws


def calibrate(
    model: SeriesModel,
    data: SeriesData,
    *,
    windows: int = 64,
    samples: int = 16,
    generator: torch.Generator | None = None,
) -> float:
    """Root-mean-square forecast error (in predictive standard deviations) over up to ``windows`` training windows
    whose last row holds a value: the ``c`` that divides ``z``."""
    observed = data.observed
    length = model.window
    ends = np.flatnonzero(observed.any(1))
    ends = ends[ends >= length - 1]
    if ends.size == 0:
        raise DiffsightError("no row of the series holds a value after the first window; cannot calibrate")
    pick = torch.randperm(ends.size, generator=generator)[:windows].numpy()
    starts = torch.from_numpy(ends[np.sort(pick)] - length + 1)
    z = torch.from_numpy(np.nan_to_num(model.normalise(data.values))).float()
    zw, ow = context_windows(z, torch.from_numpy(observed), starts, length, 0)
    _, err, _ = forecast_scores(model, zw, ow, starts, samples, generator)
    return float(max(np.sqrt(np.mean(err**2)), 1e-3))


class StreamScorer:
    """Score rows as they arrive: ``for s in StreamScorer(model).scores(rows): ...``.

    Args:
        model: a trained, calibrated model.
        samples: forecast samples per row.
        start: absolute time index of the first row (for the seasonal phase); default: right after the training
            series.
        generator: randomness of the forecasts.
    """

    def __init__(
        self,
        model: SeriesModel,
        *,
        samples: int = 16,
        start: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        if model.calibration is None:
            raise DiffsightError("the model has no anomaly-score calibration; train it with fit_series")
        if samples < 2:
            raise DiffsightError(f"samples must be at least 2, got {samples}")
        self.model = model
        self.samples = samples
        self.generator = generator
        self.index = model.train_length if start is None else int(start)
        self._past: deque[np.ndarray] = deque(maxlen=model.window - 1)

    def push(self, row: Iterable[float] | float) -> WindowScore | None:
        """Add one row (K numbers; NaN = missing); returns its score, or None while the first window fills up or
        when the row is entirely missing."""
        values = np.atleast_1d(np.asarray(row, dtype=np.float64))
        if values.shape != (self.model.num_features,):
            raise DiffsightError(
                f"each row needs {self.model.num_features} value(s) ({', '.join(self.model.columns)}), "
                f"got {values.size}"
            )
        index = self.index
        self.index += 1
        past = list(self._past)
        self._past.append(values)
        if len(past) < self.model.window - 1 or np.isnan(values).all():
            return None
        window = np.stack(past + [values])  # (L, K)
        observed = ~np.isnan(window)
        z = torch.from_numpy(np.nan_to_num(self.model.normalise(window))).float().T[None]  # (1, K, L)
        ow = torch.from_numpy(observed).T[None]
        start = torch.tensor([index - self.model.window + 1])
        score, err, draws = forecast_scores(self.model, z, ow, start, self.samples, self.generator)
        forecast = self.model.denormalise(draws[:, 0, :])  # (S, K)
        lo, med, hi = np.quantile(forecast, [0.05, 0.5, 0.95], axis=0)
        return WindowScore(
            index=index,
            value=tuple(values.tolist()),
            score=float(score[0]),
            z=float(err[0] / self.model.calibration),  # type: ignore[operator]
            median=tuple(med.tolist()),
            lower=tuple(lo.tolist()),
            upper=tuple(hi.tolist()),
        )

    def scores(self, rows: Iterable[Iterable[float] | float]) -> Iterator[WindowScore]:
        """Generator: one :class:`WindowScore` per scored row, produced as each row is consumed."""
        for row in rows:
            result = self.push(row)
            if result is not None:
                yield result
