"""``diffsight reconstruct``: solve an image inverse problem with a trained model as the prior."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def reconstruct(
    model: Annotated[str, typer.Argument(help="Model folder or shipped model name (digits, shapes).")],
    task: Annotated[str, typer.Option(help="inpaint, denoise, superres, deblur, ct or mri.")],
    input_: Annotated[
        Path,
        typer.Option(
            "--input", "-i", help="The measurement (image, .npy, DICOM, NIfTI), or with --simulate a clean image."
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Reconstruction .png or .npy; a .json summary is written beside it.")
    ],
    samples: Annotated[
        int, typer.Option(help="Posterior samples K (mean and std are taken over them).", min=1, max=1024)
    ] = 8,
    uncertainty: Annotated[
        bool, typer.Option("--uncertainty", help="Also write the per-pixel std and calibrated interval images.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the solver noise (and of the simulated measurement).")] = 0,
    method: Annotated[
        str | None, typer.Option(help="Solver: denoise, repaint, projection, dps (default per task).")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Sampler steps of the solver.", min=1, max=5000)] = None,
    noise: Annotated[float | None, typer.Option(help="Measurement noise std in data units ([-1, 1] images).")] = None,
    mask: Annotated[Path | None, typer.Option(help="inpaint: mask image or .npy, nonzero = known pixel.")] = None,
    factor: Annotated[int, typer.Option(help="superres with --simulate: downsampling factor.", min=2)] = 2,
    blur: Annotated[float, typer.Option(help="deblur: Gaussian blur std in pixels.")] = 1.0,
    angles: Annotated[int | None, typer.Option(help="ct: number of projection angles over 180 degrees.", min=1)] = None,
    acceleration: Annotated[float, typer.Option(help="mri with --simulate: k-space undersampling factor.")] = 2.5,
    simulate: Annotated[
        bool, typer.Option("--simulate", help="Treat --input as the clean image: measure it, reconstruct, score.")
    ] = False,
    coverage: Annotated[float, typer.Option(help="Stated per-pixel coverage of the intervals.")] = 0.9,
) -> None:
    """Reconstruct an image from a masked, noisy, low-resolution, blurred, CT or MRI measurement."""
    from diffsight.tasks.image_job import ReconstructJob, run_reconstruct_job

    job = ReconstructJob(
        model=model,
        task=task,
        input=input_,
        out=out,
        samples=samples,
        uncertainty=uncertainty,
        seed=seed,
        method=method,
        steps=steps,
        noise=noise,
        mask=mask,
        factor=factor,
        blur=blur,
        angles=angles,
        acceleration=acceleration,
        simulate=simulate,
        alpha=1.0 - coverage,
    )
    result = run_reconstruct_job(job)
    s = result.summary
    line = (
        f"{s['task']} with {s['method']}: {s['samples']} samples, {s['nfe_per_sample']} network evaluations, "
        f"{s['seconds']:.1f} s"
    )
    if "psnr" in s:
        line += (
            f"; PSNR {s['psnr']} dB (baseline {s['baseline_psnr']}), SSIM {s['ssim']} (baseline {s['baseline_ssim']})"
        )
    typer.echo(line)
    if "interval_coverage_stated" in s:
        text = (
            f"intervals: stated {s['interval_coverage_stated']:.0%} per-pixel coverage, calibrated on "
            f"{s['calibration_images']} held-out images"
        )
        if "interval_coverage_observed" in s:
            text += f"; observed {s['interval_coverage_observed']:.1%} on this image"
        typer.echo(text)
    for path in result.files:
        typer.echo(f"wrote {path}")
