"""``diffsight`` entry point: the Typer application and its subcommands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from diffsight._version import __version__

app = typer.Typer(
    name="diffsight",
    help="Train, sample and explain diffusion models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"diffsight {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Train, sample and explain diffusion models."""


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the PNG.")] = Path("outputs/demo.png"),
    seed: Annotated[int, typer.Option(help="Seed of the data and of the sampler.")] = 0,
    n: Annotated[int, typer.Option(help="Number of points to noise and to sample.")] = 2000,
    steps: Annotated[int, typer.Option(help="Sampler steps.")] = 20,
    sampler: Annotated[str, typer.Option(help="Sampler name (ddpm, ddim, euler, heun, dpmpp_2m, ...).")] = "heun",
    dataset: Annotated[
        str, typer.Option(help="Toy dataset: eight_gaussians (exact mixture), moons, swiss_roll, checkerboard.")
    ] = "eight_gaussians",
    sigma_max: Annotated[float, typer.Option(help="First noise level of the Karras schedule.")] = 40.0,
) -> None:
    """Draw the forward noising of 2-D toy data and its reverse sampling with an exact denoiser."""
    from diffsight.report.toy_demo import ToyDemoConfig, run_toy_demo

    config = ToyDemoConfig(out=out, seed=seed, n=n, steps=steps, sampler=sampler, dataset=dataset, sigma_max=sigma_max)
    result = run_toy_demo(config)
    typer.echo(result.summary)
    typer.echo(f"report: {result.path.resolve()}")


def main() -> None:
    """Run the CLI; errors from bad input print one line, not a traceback."""
    from diffsight.errors import DiffsightError

    try:
        app()
    except DiffsightError as err:
        typer.echo(f"error: {err}", err=True)
        raise SystemExit(2) from None
