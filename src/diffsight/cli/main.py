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
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for report.html and its traces.")] = Path(
        "diffsight-demo"
    ),
    k: Annotated[int, typer.Option(help="Continuations per branching step.", min=2, max=256)] = 32,
) -> None:
    """The main job: generate a few samples of the shipped `shapes` model and explain how each one formed."""
    from diffsight.report.explain_job import run_demo

    result, runs, seconds = run_demo(out, k=k, progress=lambda line: typer.echo(line, err=True))
    for run in runs:
        typer.echo(f"seed {run.trace.meta['seed']}: {run.narrative[0] if run.narrative else ''}")
    typer.echo(f"explained {len(runs)} samples in {seconds:.0f} s")
    typer.echo(f"report: {result.path.resolve()}")


@app.command(name="toy-demo")
def toy_demo(
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


@app.command()
def train(
    config_file: Annotated[
        Path | None, typer.Argument(help="TOML training config (e.g. configs/digits.toml).", show_default=False)
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML training config (same as the argument).")
    ] = None,
    data: Annotated[str | None, typer.Option(help="Dataset name (digits, shapes, toy2d:moons) or a path.")] = None,
    steps: Annotated[int | None, typer.Option(help="Total optimizer steps.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Global batch size.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of initial weights, data order and noise.")] = None,
    resolution: Annotated[int | None, typer.Option(help="Image side length for image folders / shapes.")] = None,
    channels: Annotated[int | None, typer.Option(help="1 (grayscale) or 3 (RGB) for image folders.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder (default runs/<config name>).")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")
    ] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show the progress bar.")] = True,
) -> None:
    """Train a diffusion model; the run folder gets checkpoints, sample grids, metrics.jsonl and model/."""
    import os
    import shlex
    import sys

    from diffsight.errors import DiffsightError
    from diffsight.training import load_config
    from diffsight.training import train as run_training

    if config_file is not None and config is not None and config_file != config:
        raise DiffsightError("give the config either as the argument or with --config, not both")
    cfg = load_config(config_file or config).with_overrides(
        data=data, steps=steps, batch_size=batch_size, seed=seed, resolution=resolution, channels=channels
    )
    run_dir = out or Path("runs") / cfg.name
    command = "diffsight " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    result = run_training(cfg, run_dir, resume=resume, progress=progress, command=command)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun / accelerate launch only the main process reports
        return
    typer.echo(
        f"trained {result.steps} steps in {result.wall_time_s:.0f} s (final loss {result.final_loss:.4f}); "
        f"model: {result.model_dir.resolve()}"
    )


def _class_labels(model: object, value: str | None, n: int) -> object:
    """--class as an index or a class name -> (n,) labels tensor, or None for unconditional sampling."""
    import torch

    from diffsight.errors import DiffsightError

    if value is None:
        return None
    names = list(model.class_names)  # type: ignore[attr-defined]
    if model.num_classes == 0:  # type: ignore[attr-defined]
        raise DiffsightError("this model is unconditional: drop --class")
    if value in names:
        index = names.index(value)
    elif value.isdigit() and int(value) < model.num_classes:  # type: ignore[attr-defined]
        index = int(value)
    else:
        raise DiffsightError(f"unknown class {value!r}; choose an index 0..{len(names) - 1} or one of {names}")
    return torch.full((n,), index, dtype=torch.long)


@app.command()
def sample(
    model: Annotated[str, typer.Argument(help="Model folder or shipped model name (digits, shapes).")],
    n: Annotated[
        int, typer.Option("--n", "-n", help="Number of samples (-n under torchrun).", min=1, max=100_000)
    ] = 64,
    steps: Annotated[int, typer.Option(help="Sampler steps (Karras schedule).", min=1, max=1000)] = 20,
    sampler: Annotated[str, typer.Option(help="ddpm, ddim, euler, heun, dpmpp_2m, dpmpp_3m, pc.")] = "dpmpp_2m",
    seed: Annotated[int, typer.Option(help="Seed of the initial noise and any noise the sampler draws.")] = 0,
    class_: Annotated[
        str | None, typer.Option("--class", help="Class index or name (conditional models); omit: unconditional.")
    ] = None,
    guidance: Annotated[float, typer.Option(help="Classifier-free guidance scale (1 = none); needs --class.")] = 1.0,
    out: Annotated[Path, typer.Option("--out", "-o", help="grid .png (images), scatter .png (2-D) or .npy.")] = Path(
        "outputs/samples.png"
    ),
) -> None:
    """Draw samples from a model and write them as an image grid or an array."""
    import numpy as np
    import torch

    from diffsight.data.image_io import save_grid
    from diffsight.errors import DiffsightError
    from diffsight.models import load_model
    from diffsight.training.distributed import generate_split, is_main_process

    suffix = out.suffix.lower()
    if suffix not in (".png", ".npy"):
        raise DiffsightError(f"--out must end in .png or .npy, got {out.name}")
    loaded = load_model(model)
    labels = _class_labels(loaded, class_, n)
    if guidance != 1.0 and labels is None:
        raise DiffsightError("--guidance needs --class (guidance pushes samples towards a class)")
    with torch.no_grad():  # under torchrun / accelerate launch the n samples are shared between processes
        images = generate_split(
            loaded.denoiser,
            loaded.event_shape,
            n,
            steps=steps,
            sampler=sampler,
            generator=torch.Generator().manual_seed(seed),
            labels=labels,
            guidance=guidance,
            null_class=loaded.null_class,
        )
        if loaded.is_latent:  # latent diffusion: sampled latents -> images through the model's decoder
            images = loaded.decode_batched(images).clamp(-1, 1)  # type: ignore[attr-defined]
    if not is_main_process():
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npy":
        np.save(out, images.cpu().numpy())
    elif images.ndim == 4:
        save_grid(images, out)
    elif images.shape[1] == 2:
        from diffsight.report.figures import scatter_png

        scatter_png(images, out, title=f"{loaded.name}: {n} samples, {sampler}, {steps} steps")
    else:
        raise DiffsightError(f"samples of shape {tuple(images.shape[1:])} cannot be drawn; use -o samples.npy")
    typer.echo(f"{n} samples from {loaded.name} ({sampler}, {steps} steps, seed {seed}): {out.resolve()}")


@app.command()
def explain(
    source: Annotated[
        str, typer.Argument(help="Model folder, shipped model name (shapes, digits), or a saved .trace.safetensors.")
    ],
    seed: Annotated[list[int] | None, typer.Option(help="Seed of the sample to explain (repeat for several).")] = None,
    class_: Annotated[str | None, typer.Option("--class", help="Class index or name (conditional models).")] = None,
    steps: Annotated[int, typer.Option(help="Sampler steps (Karras schedule).", min=1, max=1000)] = 20,
    sampler: Annotated[str, typer.Option(help="ddpm, ddim, euler, heun, dpmpp_2m, dpmpp_3m, pc.")] = "dpmpp_2m",
    guidance: Annotated[float, typer.Option(help="Classifier-free guidance scale (1 = none); needs --class.")] = 1.0,
    k: Annotated[int, typer.Option(help="Fresh-noise continuations per branching step.", min=2, max=256)] = 16,
    branch_steps: Annotated[
        int | None, typer.Option("--branch-steps", help="How many steps to branch from (default 8).", min=2)
    ] = None,
    attribution: Annotated[
        bool, typer.Option("--attribution/--no-attribution", help="Integrated-gradients map at the decided step.")
    ] = True,
    likelihood: Annotated[
        bool, typer.Option("--likelihood/--no-likelihood", help="Bits/dim and surprise maps of each sample.")
    ] = True,
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML report; traces are saved beside it.")] = Path(
        "report.html"
    ),
) -> None:
    """Explain how samples formed: one offline HTML report, with each run's Trace saved beside it."""
    from diffsight.errors import DiffsightError
    from diffsight.models import load_model
    from diffsight.report.explain_job import ExplainJob, is_trace_file, run_explain_job

    if out.suffix.lower() not in (".html", ".htm"):
        raise DiffsightError(f"--out must end in .html, got {out.name}")
    label = None
    if is_trace_file(source):
        if seed or class_ is not None or guidance != 1.0:
            raise DiffsightError("a saved trace fixes seed, class and guidance: drop --seed/--class/--guidance")
    elif class_ is not None:
        label = int(_class_labels(load_model(source), class_, 1)[0])  # type: ignore[index]
    if guidance != 1.0 and label is None and not is_trace_file(source):
        raise DiffsightError("--guidance needs --class (guidance pushes samples towards a class)")
    job = ExplainJob(
        source=source,
        out=out,
        seeds=tuple(seed or [0]),
        label=label,
        steps=steps,
        sampler=sampler,
        guidance=guidance,
        k=k,
        branch_steps=branch_steps,
        attribution=attribution,
        likelihood=likelihood,
    )
    result, runs = run_explain_job(job, progress=lambda line: typer.echo(line, err=True))
    if result is None:  # not the main process under torchrun: the main one reports
        return
    for run in runs:
        for line in run.narrative:
            typer.echo(line)
    for trace in result.traces:
        typer.echo(f"trace: {trace.resolve()}")
    typer.echo(f"report: {result.path.resolve()}")


@app.command()
def score(
    model: Annotated[str, typer.Argument(help="Model folder or shipped model name (digits, shapes).")],
    inputs: Annotated[
        list[str], typer.Argument(help="Image files, folders, or a dataset name (digits, shapes, heldout).")
    ],
    n: Annotated[int | None, typer.Option("--n", help="At most this many items per folder or dataset.", min=1)] = None,
    class_: Annotated[
        str | None, typer.Option("--class", help="Class of every input (conditional models): information maps.")
    ] = None,
    points: Annotated[int, typer.Option(help="Log-SNR points per input (SE ~ 1/sqrt(points)).", min=4)] = 64,
    seed: Annotated[int, typer.Option(help="Seed of the noise, the log-SNR points and the dequantisation.")] = 0,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write an offline HTML report.")] = None,
) -> None:
    """Bits/dim with standard errors, per-pixel surprise and (conditional models) information maps."""
    from diffsight.errors import DiffsightError
    from diffsight.models import load_model
    from diffsight.report.score_job import format_rows, rows_json, score_job, score_rows, write_score_report

    if out is not None and out.suffix.lower() not in (".html", ".htm"):
        raise DiffsightError(f"--out must end in .html, got {out.name}")
    loaded = load_model(model)
    label = None if class_ is None else int(_class_labels(loaded, class_, 1)[0])  # type: ignore[index]
    scored = score_job(loaded, inputs, n=n, label=label, points=points, seed=seed)
    rows = score_rows(scored, loaded)
    typer.echo(rows_json(rows, loaded, scored.result) if json_ else format_rows(rows))
    if not json_:
        r = scored.result
        typer.echo(
            f"{len(rows)} inputs, {r.nfe_per_image} network evaluations each, {r.seconds:.1f} s "
            f"({r.seconds / len(rows) * 1000:.0f} ms per input, batched across inputs and noise levels)"
        )
    if out is not None:
        typer.echo(f"report: {write_score_report(scored, loaded, out).resolve()}", err=json_)


@app.command()
def audit(
    model: Annotated[str, typer.Argument(help="Model folder or shipped model name (digits, shapes, shapes-red).")],
    data: Annotated[
        str | None, typer.Option(help="Dataset to audit against (default: the model's own training data).")
    ] = None,
    n: Annotated[int, typer.Option("--n", help="Samples to generate and audit.", min=10, max=100_000)] = 1000,
    steps: Annotated[int, typer.Option(help="Sampler steps.", min=1, max=1000)] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the samples, the controls and the attacks.")] = 0,
    target: Annotated[
        str, typer.Option(help="Bias target: 'training' (the data's own factor shares) or 'uniform'.")
    ] = "training",
    attribute: Annotated[
        int,
        typer.Option(
            help="Samples (the closest to a training image) to attribute to training images with TRAK, plus one "
            "trace step by step; 0 = skip (featurising the training set costs minutes).",
            min=0,
        ),
    ] = 4,
    locate: Annotated[
        bool, typer.Option(help="Find the step at which each skewed factor is decided (branching on traces).")
    ] = True,
    json_: Annotated[bool, typer.Option("--json", help="Print the JSON summary (what a pipeline gates on).")] = False,
    out: Annotated[Path, typer.Option("--out", "-o", help="The offline HTML audit page.")] = Path("audit.html"),
) -> None:
    """Memorization, training-data attribution, membership inference and bias audits of a model: one offline HTML
    page and a JSON summary."""
    import json as json_lib

    from diffsight.errors import DiffsightError
    from diffsight.models import load_model
    from diffsight.report.audit_job import run_audit, write_audit_report

    if out.suffix.lower() not in (".html", ".htm"):
        raise DiffsightError(f"--out must end in .html, got {out.name}")
    if target not in ("training", "uniform"):
        raise DiffsightError(f"--target must be 'training' or 'uniform', got {target!r}")
    report = run_audit(
        load_model(model),
        data=data,
        n=n,
        steps=steps,
        seed=seed,
        target=target,
        attribute=attribute,
        locate=locate,
        progress=lambda m: typer.echo(m, err=True),
    )
    path = write_audit_report(report, out)
    if json_:
        typer.echo(json_lib.dumps(report.summary))
    else:
        typer.echo(json_lib.dumps(report.summary["gate"], indent=2))
    typer.echo(f"report: {path.resolve()}", err=json_)


@app.command(name="eval")
def eval_(
    model: Annotated[str, typer.Argument(help="Model folder or shipped model name (digits, shapes).")],
    n: Annotated[int | None, typer.Option("--n", help="Samples to score (default: held-out half, <= 2000).")] = None,
    steps: Annotated[int, typer.Option(help="Sampler steps.", min=1, max=1000)] = 20,
    sampler: Annotated[str, typer.Option(help="Sampler name.")] = "dpmpp_2m",
    seed: Annotated[int, typer.Option(help="Seed of the sampling noise.")] = 0,
    guidance: Annotated[float, typer.Option(help="Classifier-free guidance scale (conditional models).")] = 1.0,
    unconditional: Annotated[bool, typer.Option(help="Sample a conditional model through its null class.")] = False,
    reference_steps: Annotated[
        int, typer.Option(help="Also score heun at this many steps with the same noise (solver check); 0 = off.")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write the JSON report here.")] = None,
    update_card: Annotated[
        bool, typer.Option("--update-card", help="Record the metrics in the model folder and its card.")
    ] = False,
) -> None:
    """Sample a model and score it: FD beside its real-vs-real floor, precision/recall, factor histograms."""
    import json

    from diffsight.metrics.model_eval import card_metrics, evaluate_model, format_model_eval
    from diffsight.models import load_model
    from diffsight.models.folder import update_model_metrics

    loaded = load_model(model)
    say = (lambda line: typer.echo(line, err=True)) if as_json else typer.echo
    report = evaluate_model(
        loaded,
        n=n,
        steps=steps,
        sampler=sampler,
        seed=seed,
        guidance=guidance,
        unconditional=unconditional,
        reference_steps=reference_steps,
        progress=say,
    )
    typer.echo(json.dumps(report, indent=2) if as_json else format_model_eval(report))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
    if update_card:
        key = "unconditional" if unconditional or loaded.num_classes == 0 else "conditional"
        if guidance != 1.0:
            key += f"_guidance_{guidance:g}"
        update_model_metrics(loaded.path, {key: card_metrics(report)})
        say(f"metrics recorded in {loaded.path / 'diffsight.json'} and its README.md")


from diffsight.cli import serve_cmd  # noqa: E402

app.command(name="serve")(serve_cmd.serve)
from diffsight.cli import impute_cmd  # noqa: E402

app.command(name="impute")(impute_cmd.impute)
from diffsight.cli import series_cmd  # noqa: E402

app.command(name="impute-series")(series_cmd.impute_series_cmd)
app.command(name="watch")(series_cmd.watch)
from diffsight.cli import reconstruct_cmd  # noqa: E402

app.command(name="reconstruct")(reconstruct_cmd.reconstruct)
from diffsight.cli import text_cmd  # noqa: E402

app.command(name="text2img")(text_cmd.text2img)


def main() -> None:
    """Run the CLI; errors from bad input print one line, not a traceback."""
    from diffsight.errors import DiffsightError

    try:
        app()
    except DiffsightError as err:
        typer.echo(f"error: {err}", err=True)
        raise SystemExit(2) from None
