"""``diffsight text2img``: sample a local diffusers text-to-image folder with a diffsight sampler, and (optionally)
write a report of which word put what where, and when."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

_DTYPES = ("float32", "float16", "bfloat16")


def text2img(
    folder: Annotated[
        Path, typer.Argument(help="Local diffusers text-to-image folder (unet/, vae/, text_encoder/...).")
    ],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="The text prompt.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the image (PNG).")] = Path("out.png"),
    seed: Annotated[
        int, typer.Option(help="Seed of the initial latents and of any sampler noise (drawn on the CPU).")
    ] = 0,
    steps: Annotated[int, typer.Option(help="Sampler steps on the folder scheduler's timesteps.", min=1)] = 25,
    guidance: Annotated[float, typer.Option(help="Classifier-free guidance scale (1 = none).")] = 7.5,
    sampler: Annotated[str, typer.Option(help="Sampler name (dpmpp_2m, ddim, euler, heun, ddpm, ...).")] = "dpmpp_2m",
    height: Annotated[int | None, typer.Option(help="Image height in pixels (default: the model's).")] = None,
    width: Annotated[int | None, typer.Option(help="Image width in pixels (default: the model's).")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, mps ...")] = "cpu",
    dtype: Annotated[str, typer.Option(help="float32, float16 or bfloat16 (half precision on a GPU).")] = "float32",
    attention_report: Annotated[
        Path | None, typer.Option("--attention-report", help="Also write an HTML report of cross-attention maps.")
    ] = None,
    interventions: Annotated[
        bool, typer.Option(help="In the report: drop each word, re-run on the same noise, score the maps.")
    ] = True,
    swap: Annotated[
        list[str] | None, typer.Option(help="In the report: also swap a word, as word=replacement (repeatable).")
    ] = None,
    max_words: Annotated[int, typer.Option(help="In the report: drop at most this many words.", min=0)] = 8,
    information_points: Annotated[
        int, typer.Option(help="In the report: log-SNR points per word for i(x; word | rest); 0 = skip.", min=0)
    ] = 16,
) -> None:
    """Generate an image from a prompt with a local text-to-image model (never downloads)."""
    import torch

    from diffsight.data.image_io import save_grid
    from diffsight.errors import DiffsightError, unknown_name
    from diffsight.explain.text_conditioning import prompt_interventions, text_to_image, word_information
    from diffsight.models.text2img import load_text_to_image

    if dtype not in _DTYPES:
        raise unknown_name("dtype", dtype, list(_DTYPES))
    swaps: dict[str, str] = {}
    for item in swap or []:
        word, sep, replacement = item.partition("=")
        if not sep or not word or not replacement:
            raise DiffsightError(f"--swap takes word=replacement, got {item!r}")
        swaps[word] = replacement

    def say(line: str) -> None:
        typer.echo(line, err=True)

    model = load_text_to_image(folder, device=device, dtype=getattr(torch, dtype))
    say(f"loaded {folder} (latents {model.latent_shape}, {len(model.denoiser.schedule.betas)} training timesteps)")
    with torch.inference_mode():
        sample = text_to_image(
            model,
            prompt,
            seed=seed,
            steps=steps,
            guidance=guidance,
            sampler=sampler,
            height=height,
            width=width,
            record_attention=attention_report is not None,
        )
        save_grid(sample.images, out, nrow=1, scale=1, pad=0)
        typer.echo(f"image: {out.resolve()}")
        if attention_report is None:
            return
        from diffsight.report.text_report import write_attention_report

        words = [w for w, span in zip(sample.tokens.words, sample.tokens.spans, strict=True) if span][:max_words]
        edits = []
        if interventions or swaps:
            say(f"interventions: {len(words) if interventions else 0} drops, {len(swaps)} swaps")
            edits = prompt_interventions(model, sample, drop=words if interventions else [], swaps=swaps)
        info = []
        if information_points:
            say(f"conditional information of {len(words)} words ({information_points} points each)")
            info = word_information(model, sample, words=words, points=information_points, seed=seed)
        write_attention_report(attention_report, sample, interventions=edits, information=info)
    for r in edits:
        typer.echo(f"{r.kind} {r.word!r}: change {r.change:.3f}  spearman {r.spearman:.3f}  auroc {r.auroc:.3f}")
    for w in info:
        typer.echo(f"i(x; {w.word!r} | rest) = {w.value:.2f} +- {w.stderr:.2f} nats")
    typer.echo(f"report: {attention_report.resolve()}")
