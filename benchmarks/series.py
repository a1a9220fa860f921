"""Time-series imputation benchmark: a CSDI-style diffusion model against straight-line interpolation and
seasonal-naive on statsmodels' bundled series (co2 monthly, sunspots yearly, macrodata quarterly x 12 columns).

For each series and each fraction p in (10%, 50%, 90%), p of the observed values are hidden at random (seeded);
the model is trained on the remaining values only (self-supervised masking), then fills the hidden ones with 50
samples. Scores on the hidden values, in units of each column's standard deviation (so columns and series are
comparable): CRPS of the samples (Gneiting & Raftery 2007, eq. 21) and MAE of their median. The baselines give a
single value, so their CRPS is their MAE. Also printed: the stack weight w of the network's correction to its
fill, and how many columns keep a seasonal profile and a drift at the ends (docs/time-series.md). Single
thread. Run: ``.venv/bin/python benchmarks/series.py``
(``--quick`` for a short smoke run; ``--only co2 --fractions 0.5``).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from diffsight.tasks.series import (
    BUILTIN_SERIES,
    SeriesConfig,
    builtin_series,
    crps_samples,
    fit_series,
    impute_series,
    linear_interpolation,
    seasonal_naive,
    series_from_array,
)

WINDOWS = {"co2": 48, "sunspots": 44, "macrodata": 32}


def hide(values: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A (T, K) bool mask of the observed values to hide: exactly round(fraction * n_observed) of them."""
    rng = np.random.default_rng(seed)
    observed = np.flatnonzero(~np.isnan(values))
    chosen = rng.choice(observed, size=int(round(fraction * observed.size)), replace=False)
    mask = np.zeros(values.size, dtype=bool)
    mask[chosen] = True
    return mask.reshape(values.shape)


def run_one(name: str, fraction: float, config: SeriesConfig, samples: int, seed: int) -> dict[str, float]:
    data = builtin_series(name)
    period = BUILTIN_SERIES[name]
    hidden = hide(data.values, fraction, seed)
    train_values = np.where(hidden, np.nan, data.values)
    scale = np.nanstd(data.values, axis=0)  # (K,) units of the scores
    train = series_from_array(train_values, data.columns, data.time, data.time_name)
    cfg = replace(config, window=min(config.window, WINDOWS[name]), period=period, seed=seed)
    t0 = time.perf_counter()
    model = fit_series(train, cfg)
    t1 = time.perf_counter()
    result = impute_series(model, train, samples=samples, generator=torch.Generator().manual_seed(seed))
    t2 = time.perf_counter()
    truth = data.values
    rows, cols = np.nonzero(hidden)
    norm = scale[cols]
    crps = crps_samples(result.samples[:, rows, cols], truth[rows, cols]) / norm
    out = {
        "crps": float(crps.mean()),
        "mae": float((np.abs(result.median[rows, cols] - truth[rows, cols]) / norm).mean()),
        "cover90": float(
            ((result.lower[rows, cols] <= truth[rows, cols]) & (truth[rows, cols] <= result.upper[rows, cols])).mean()
        ),
        "train_s": t1 - t0,
        "weight": model.stack_weight,
        "seasonal": int(np.count_nonzero(model.seasonal.any(axis=1))),
        "drift": int(np.count_nonzero(model.drift)),
        "impute_s": t2 - t1,
    }
    for label, filled in (
        ("linear", linear_interpolation(train_values)),
        ("seasonal_naive", seasonal_naive(train_values, period)),
    ):
        out[label] = float((np.abs(filled[rows, cols] - truth[rows, cols]) / norm).mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=list(BUILTIN_SERIES), choices=list(BUILTIN_SERIES))
    parser.add_argument("--fractions", nargs="*", type=float, default=[0.1, 0.5, 0.9])
    parser.add_argument("--steps", type=int, default=SeriesConfig().train_steps)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="40 training steps, 8 samples (smoke test)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps, samples = (40, 8) if args.quick else (args.steps, args.samples)
    config = SeriesConfig(train_steps=steps)
    print(
        f"{'series':<10} {'hidden':>6} | {'CRPS':>7} {'MAE':>7} {'cov90':>6} | {'linear':>7} {'seas.':>7} "
        f"| {'CRPS/best':>9} {'MAE/best':>8} | {'w':>4} {'seas':>4} {'drift':>5} | {'train s':>7} {'fill s':>6}"
    )
    for name in args.only:
        for fraction in args.fractions:
            r = run_one(name, fraction, config, samples, args.seed)
            best = min(r["linear"], r["seasonal_naive"])
            print(
                f"{name:<10} {fraction:>6.0%} | {r['crps']:7.4f} {r['mae']:7.4f} {r['cover90']:6.2f} | "
                f"{r['linear']:7.4f} {r['seasonal_naive']:7.4f} | {r['crps'] / best:9.3f} {r['mae'] / best:8.3f} | "
                f"{r['weight']:4.2f} {r['seasonal']:4d} {r['drift']:5d} | "
                f"{r['train_s']:7.1f} {r['impute_s']:6.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
