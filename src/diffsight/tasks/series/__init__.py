"""Time series: CSDI-style conditional imputation, forecasts of a gap at the end, streaming anomaly scores.

Train a small conditional denoiser on the observed values of one (multivariate) series with self-supervised
masking (Tashiro et al. 2021), then draw K samples of every missing value: their median fills the gap and their
quantiles give an interval. :class:`StreamScorer` turns the same model into a per-window anomaly score on a
stream. See docs/time-series.md.
"""

from __future__ import annotations

from diffsight.tasks.series.baselines import linear_interpolation, seasonal_naive
from diffsight.tasks.series.data import (
    BUILTIN_SERIES,
    SeriesData,
    builtin_series,
    guess_period,
    read_series_csv,
    series_from_array,
    series_from_frame,
)
from diffsight.tasks.series.impute import SeriesImputation, impute_series, point_estimate
from diffsight.tasks.series.metrics import crps_gaussian, crps_samples, mae
from diffsight.tasks.series.model import SeriesConfig, SeriesModel, load_series_model, save_series_model
from diffsight.tasks.series.stream import StreamScorer, WindowScore, calibrate
from diffsight.tasks.series.train import fit_series

__all__ = [
    "BUILTIN_SERIES",
    "SeriesConfig",
    "SeriesData",
    "SeriesImputation",
    "SeriesModel",
    "StreamScorer",
    "WindowScore",
    "builtin_series",
    "calibrate",
    "crps_gaussian",
    "crps_samples",
    "fit_series",
    "guess_period",
    "impute_series",
    "linear_interpolation",
    "load_series_model",
    "mae",
    "point_estimate",
    "read_series_csv",
    "save_series_model",
    "seasonal_naive",
    "series_from_array",
    "series_from_frame",
]
