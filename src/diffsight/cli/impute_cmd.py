"""``diffsight impute DATA.csv -o filled.csv``: fit a table diffusion model on the file's observed cells, fill the
empty ones, and optionally write per-cell intervals (docs/tables.md)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    import pandas as pd

    from diffsight.tasks.tables import ImputationResult, TableDiffusionConfig, TabularDiffusion

__all__ = ["impute"]


def impute(
    data: Annotated[Path, typer.Argument(help="CSV with a header row; empty cells are the ones to fill.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the filled CSV.")],
    intervals: Annotated[
        bool,
        typer.Option(
            "--intervals",
            help="Also write OUT's stem + '.intervals.csv': one line per filled cell with value, lower, upper "
            "(numeric) or probability (categorical).",
        ),
    ] = False,
    coverage: Annotated[float, typer.Option(help="Stated coverage of the intervals.", min=0.5, max=0.99)] = 0.9,
    samples: Annotated[int, typer.Option(help="Draws per row (K).", min=2, max=1000)] = 50,
    seed: Annotated[int, typer.Option(help="Seed of the weights, masks and draws.")] = 0,
    steps: Annotated[int | None, typer.Option(help="Training steps (default 1500).", min=1)] = None,
    epochs: Annotated[
        float | None, typer.Option(help="Training length in passes over the rows (instead of --steps).", min=0.01)
    ] = None,
    categorical: Annotated[
        list[str] | None, typer.Option("--categorical", help="A numeric column to treat as categories (repeat).")
    ] = None,
    model: Annotated[
        Path | None, typer.Option("--model", help="Use a model folder saved with --save-model instead of training.")
    ] = None,
    save_model: Annotated[
        Path | None, typer.Option("--save-model", help="Save the fitted model to this folder.")
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show the training progress bar.")] = True,
    linear_prior: Annotated[
        str,
        typer.Option(
            "--linear-prior",
            help="Gaussian baseline the network corrects: none (default), residual (best on near-linear "
            "tables), or input.",
        ),
    ] = "none",
    stack: Annotated[
        bool,
        typer.Option(
            "--stack/--no-stack",
            help="Fill numeric cells with the draws' mean stacked with a linear (Gaussian) fill, weighted on the "
            "withheld cells (default), or with the draws' mean alone.",
        ),
    ] = True,
) -> None:
    """Fill the empty cells of a CSV with a diffusion model trained on the file's own observed cells."""
    from diffsight.atomic import write_bytes_atomic
    from diffsight.errors import DiffsightError
    from diffsight.tasks.tables import TableDiffusionConfig, TabularDiffusion, infer_columns, read_table

    say = lambda line: typer.echo(line, err=True)  # noqa: E731
    if steps is not None and epochs is not None:
        raise DiffsightError("give the training length either as --steps or as --epochs, not both")
    frame = read_table(data)
    infer_columns(frame, categorical or [])  # refuse unusable columns before any training
    if not frame.isna().to_numpy().any():
        raise DiffsightError(f"{data} has no missing values: leave the cells to fill empty (or write NA in them)")
    if model is not None:
        if steps is not None or epochs is not None or categorical:
            raise DiffsightError("--model uses a fitted model: drop --steps, --epochs and --categorical")
        fitted = TabularDiffusion.load(model)
    else:
        config = TableDiffusionConfig(seed=seed, samples=samples, linear_prior=linear_prior, stack_linear=stack)
        if epochs is not None:
            steps = max(1, math.ceil(epochs * len(frame) / config.batch_size))
        config = config.replace(steps=steps)
        fitted = _fit(frame, categorical or [], config, progress)
        say(
            f"trained {config.steps} steps on {fitted.info['observed_cells']} observed cells in "
            f"{fitted.info['fit_seconds']:.0f} s ({fitted.info['calibration_cells']} withheld for calibration)"
        )
    if save_model is not None:
        fitted.save(save_model)
        say(f"model: {save_model.resolve()}")
    result = fitted.impute(frame, samples=samples, coverage=coverage, seed=seed, stack=stack)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out, result.filled.to_csv(index=False).encode())
    rows = int(result.missing.any(axis=1).sum())
    typer.echo(f"filled {int(result.missing.sum())} cells in {rows} rows with {samples} draws each: {out.resolve()}")
    if result.stack_weight < 1.0:
        w = result.stack_weight
        typer.echo(f"numeric cells: {w:.2f} x the draws' mean + {1 - w:.2f} x the linear fill (stacked)")
    if intervals:
        path = out.with_name(out.stem + ".intervals.csv")
        write_bytes_atomic(path, _interval_table(result).to_csv(index=False).encode())
        scale = "uncalibrated (too few withheld cells)" if math.isinf(result.scale) else f"scale {result.scale:.2f}"
        typer.echo(f"intervals ({coverage:.0%}, split-conformal, {scale}): {path.resolve()}")


def _fit(frame: pd.DataFrame, categorical: list[str], config: TableDiffusionConfig, progress: bool) -> TabularDiffusion:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from diffsight.tasks.tables import TabularDiffusion

    columns = (
        TextColumn("training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), disable=not progress, transient=False) as bar:
        task = bar.add_task("train", total=config.steps, loss=float("nan"))

        def report(step: int, total: int, loss: float) -> None:
            if step % 25 == 0 or step == total:
                bar.update(task, completed=step, loss=loss)

        return TabularDiffusion.fit(frame, categorical=categorical, config=config, progress=report)


def _interval_table(result: ImputationResult) -> pd.DataFrame:
    """One line per filled cell: row (0-based), column, value, lower, upper, probability."""
    import numpy as np
    import pandas as pd

    r, j = np.nonzero(result.missing)
    filled, lower, upper, prob = result.filled, result.lower, result.upper, result.probability
    return pd.DataFrame(
        {
            "row": r,
            "column": [str(filled.columns[c]) for c in j],
            "value": [filled.iat[a, b] for a, b in zip(r, j, strict=True)],
            "lower": lower.to_numpy()[r, j],
            "upper": upper.to_numpy()[r, j],
            "probability": prob.to_numpy()[r, j],
        }
    )
