"""``diffsight impute-series`` and ``diffsight watch``: fill gaps in a series CSV; score a stream for anomalies.

Thin shells over :mod:`diffsight.tasks.series`: parse, build a config, call one library function.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer

from diffsight.errors import DiffsightError

__all__ = ["impute_series_cmd", "watch"]


def _config(data: Any, window: int, period: int | None, steps: int, seed: int) -> Any:
    from diffsight.tasks.series import SeriesConfig, guess_period

    if period is None:
        period = guess_period(data)
    return SeriesConfig(window=window, period=period, train_steps=steps, seed=seed)


def _say(line: str) -> None:
    typer.echo(line, err=True)


def _train(data: Any, window: int, period: int | None, steps: int, seed: int) -> Any:
    import torch

    from diffsight.tasks.series import fit_series

    torch.set_num_threads(1)
    config = _config(data, window, period, steps, seed)
    _say(
        f"training on {data.length} rows x {data.num_features} column(s), window {min(window, data.length)}, "
        f"period {config.period or 'none'}, {steps} steps"
    )
    model = fit_series(data, config, progress=lambda step, loss: _say(f"  step {step}: loss {loss:.4f}"))
    _say(_fill_summary(model))
    return model


def _fill_summary(model: Any) -> str:
    """One line on what the fill does per column and how much of the network's correction is kept."""

    def names(flags: Any) -> str:
        chosen = [c for c, f in zip(model.columns, flags, strict=True) if f]
        return ", ".join(chosen) if chosen else "none"

    return (
        f"fill: seasonal profile on {names(model.seasonal.any(axis=1))}; drift beyond the ends on "
        f"{names(model.drift != 0)}; network correction kept at w = {model.stack_weight:.2f} (held-out values)"
    )


def _extend_time(time: Any, extra: int) -> list[Any]:
    """Time stamps for ``extra`` rows past the end: a constant numeric or date step continued; else empty."""
    import numpy as np
    import pandas as pd

    if extra == 0 or time is None or len(time) < 2:
        return [""] * extra
    series = pd.Series(time)
    if pd.api.types.is_numeric_dtype(series):
        steps = np.diff(series.to_numpy(dtype=np.float64))
        if np.allclose(steps, steps[0]):
            last = series.iloc[-1]
            return [last + steps[0] * (i + 1) for i in range(extra)]
        return [""] * extra
    try:
        stamps = pd.DatetimeIndex(pd.to_datetime(series))
        freq = pd.infer_freq(stamps)
    except (ValueError, TypeError):
        return [""] * extra
    if freq is None:
        return [""] * extra
    future = pd.date_range(stamps[-1], periods=extra + 1, freq=freq)[1:]
    fmt = "%Y-%m-%d" if (stamps == stamps.normalize()).all() else "%Y-%m-%d %H:%M:%S"
    return [s.strftime(fmt) for s in future]


def impute_series_cmd(
    data: Annotated[Path, typer.Argument(help="CSV: one row per time step, one column per variable; empty = missing.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the filled CSV.")],
    time_column: Annotated[
        str | None, typer.Option("--time-column", help="Column with the time stamps (kept as is, not imputed).")
    ] = None,
    samples: Annotated[int, typer.Option("--samples", help="Posterior samples per window.", min=2, max=1000)] = 50,
    intervals: Annotated[
        bool, typer.Option("--intervals", help="Add COLUMN_lower and COLUMN_upper columns (central --level interval).")
    ] = False,
    level: Annotated[float, typer.Option("--level", help="Coverage of the intervals.", min=0.01, max=0.99)] = 0.9,
    forecast: Annotated[int, typer.Option("--forecast", help="Also forecast this many steps past the end.", min=0)] = 0,
    window: Annotated[int, typer.Option("--window", help="Window length in time steps.", min=8)] = 48,
    period: Annotated[
        int | None, typer.Option("--period", help="Seasonal period in steps (default: guessed from the data).", min=2)
    ] = None,
    steps: Annotated[int, typer.Option("--steps", help="Training steps.", min=1)] = 800,
    seed: Annotated[int, typer.Option("--seed", help="Seed of training and sampling.")] = 0,
    save_model: Annotated[
        Path | None, typer.Option("--save-model", help="Also save the trained model in this folder (for watch).")
    ] = None,
) -> None:
    """Fill the missing values of a time-series CSV (CSDI-style diffusion), with intervals and a forecast."""
    import numpy as np
    import pandas as pd
    import torch

    from diffsight.atomic import write_bytes_atomic
    from diffsight.tasks.series import impute_series, read_series_csv, save_series_model

    series = read_series_csv(data, time_column)
    missing = int((~series.observed).sum())
    if missing == 0 and forecast == 0:
        raise DiffsightError(
            f"{data} has no missing values: nothing to impute. Leave the cells to fill empty, "
            "or pass --forecast H to forecast H steps past the end"
        )
    model = _train(series, window, period, steps, seed)
    if save_model is not None:
        save_series_model(model, save_model)
        _say(f"model saved in {save_model}")
    result = impute_series(
        model, series, samples=samples, forecast=forecast, level=level, generator=torch.Generator().manual_seed(seed)
    )
    frame = pd.DataFrame(result.median, columns=list(series.columns))
    if intervals:
        for k, name in enumerate(series.columns):
            frame[f"{name}_lower"] = np.where(result.observed[:, k], np.nan, result.lower[:, k])
            frame[f"{name}_upper"] = np.where(result.observed[:, k], np.nan, result.upper[:, k])
    if series.time_name is not None:
        times = list(series.time) + _extend_time(series.time, forecast)
        frame.insert(0, series.time_name, times)
    write_bytes_atomic(out, frame.to_csv(index=False).encode())
    typer.echo(
        f"filled {missing} missing value(s) in {series.num_features} column(s)"
        + (f", forecast {forecast} step(s)" if forecast else "")
        + f" from {samples} samples; wrote {out}"
    )


def _rows(stream: TextIO, columns: tuple[str, ...]) -> Iterator[list[float]]:
    """Numbers from each non-blank line (comma- or space-separated); a first line naming the columns is skipped."""
    for number, line in enumerate(stream, start=1):
        text = line.strip()
        if not text:
            continue
        cells = [c.strip() for c in (text.split(",") if "," in text else text.split())]
        if number == 1 and tuple(cells) == columns:
            continue
        row = []
        for cell in cells:
            try:
                row.append(float(cell) if cell not in ("", "NA", "nan", "NaN") else float("nan"))
            except ValueError:
                raise DiffsightError(f"input line {number}: {cell!r} is not a number") from None
        if len(row) != len(columns):
            raise DiffsightError(
                f"input line {number} has {len(row)} value(s); the model expects {len(columns)} ({', '.join(columns)})"
            )
        yield row


def watch(
    model_dir: Annotated[
        Path | None, typer.Argument(help="A series model folder (from --save or impute-series --save-model).")
    ] = None,
    train: Annotated[
        Path | None, typer.Option("--train", help="Train a model on this CSV first (instead of MODEL_DIR).")
    ] = None,
    input_: Annotated[
        str, typer.Option("--input", "-i", help="File of incoming values, one row per line; '-' reads stdin.")
    ] = "-",
    time_column: Annotated[str | None, typer.Option("--time-column", help="Time column of the --train CSV.")] = None,
    save: Annotated[Path | None, typer.Option("--save", help="Save the model trained with --train here.")] = None,
    samples: Annotated[int, typer.Option("--samples", help="Forecast samples per value.", min=2, max=1000)] = 16,
    threshold: Annotated[float, typer.Option("--threshold", help="Flag windows whose z-score exceeds this.")] = 3.0,
    start: Annotated[
        int | None,
        typer.Option("--start", help="Time index of the first value (default: right after the training series)."),
    ] = None,
    window: Annotated[int, typer.Option("--window", help="Window length for --train.", min=8)] = 48,
    period: Annotated[int | None, typer.Option("--period", help="Seasonal period for --train.", min=2)] = None,
    steps: Annotated[int, typer.Option("--steps", help="Training steps for --train.", min=1)] = 800,
    seed: Annotated[int, typer.Option("--seed", help="Seed of training and forecasts.")] = 0,
) -> None:
    """Print one anomaly score per window as values arrive (CSV lines: index,z,score,flag), flushing each line."""
    import torch

    from diffsight.tasks.series import StreamScorer, load_series_model, read_series_csv, save_series_model

    if (model_dir is None) == (train is None):
        raise DiffsightError("give either a model folder or --train DATA.csv (exactly one of them)")
    if train is not None:
        model = _train(read_series_csv(train, time_column), window, period, steps, seed)
        if save is not None:
            save_series_model(model, save)
            _say(f"model saved in {save}")
    else:
        model = load_series_model(model_dir)  # type: ignore[arg-type]
    torch.set_num_threads(1)
    scorer = StreamScorer(model, samples=samples, start=start, generator=torch.Generator().manual_seed(seed))
    _say(f"scoring; the first score comes after {model.window - 1} values fill the window")
    if input_ != "-" and not Path(input_).is_file():
        raise DiffsightError(f"no such input file: {input_}")
    stream = sys.stdin if input_ == "-" else open(input_)  # noqa: SIM115 - closed below
    try:
        typer.echo("index,z,score,flag")
        sys.stdout.flush()
        for result in scorer.scores(_rows(stream, model.columns)):
            flag = "anomaly" if result.z > threshold else ""
            typer.echo(f"{result.index},{result.z:.3f},{result.score:.5f},{flag}")
            sys.stdout.flush()
    finally:
        if stream is not sys.stdin:
            stream.close()
