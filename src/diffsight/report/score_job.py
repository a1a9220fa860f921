"""What ``diffsight score`` does: load the inputs, score them with a model, print / write JSON / write a report.

Inputs are image files, folders of images (read recursively), or a dataset name (``digits``, ``shapes``, or
``heldout``: the items the model's config held out of training). Image files are 8-bit, so they are scored as
256-level data; a dataset is scored with its own levels (17 for scikit-learn's digits).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from diffsight._version import __version__
from diffsight.atomic import write_bytes_atomic
from diffsight.data.image_folder import IMAGE_EXTENSIONS, load_image_files
from diffsight.data.image_io import grid_png_bytes, heatmap_png_bytes
from diffsight.data.registry import BUILTIN_DATASETS, load_data
from diffsight.errors import DiffsightError
from diffsight.explain.likelihood import ScoreResult, data_levels, score_inputs
from diffsight.metrics.model_eval import heldout_data_of
from diffsight.models.folder import LoadedModel
from diffsight.trace.html import image_tag, line_plot_svg

__all__ = ["ScoredInputs", "load_inputs", "score_job", "score_rows", "write_score_report"]


@dataclass(frozen=True, eq=False)
class ScoredInputs:
    """The inputs (B, *event), a name per input, their labels (or None) and the scores."""

    names: list[str]
    x: torch.Tensor
    labels: torch.Tensor | None
    result: ScoreResult


def _files_of(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


def load_inputs(
    model: LoadedModel, sources: Sequence[str], *, n: int | None = None
) -> tuple[list[str], torch.Tensor, torch.Tensor | None, int | None]:
    """(names, images shaped like the model's samples, labels or None, grey levels) for the given sources."""
    if not sources:
        raise DiffsightError("give at least one input: image files, a folder, or a dataset name")
    event = tuple(model.event_shape)
    if len(event) != 3:
        raise DiffsightError(f"{model.name} is not an image model: score takes image models")
    names: list[str] = []
    parts: list[torch.Tensor] = []
    labels: list[torch.Tensor] | None = []
    levels: set[int | None] = set()
    for source in sources:
        path = Path(source).expanduser()
        if source == "heldout" or source in BUILTIN_DATASETS:
            data = heldout_data_of(model) if source == "heldout" else load_data(source)
            if tuple(data.samples.shape[1:]) != event:
                raise DiffsightError(
                    f"{source} holds {tuple(data.samples.shape[1:])} items; {model.name} takes {event}"
                )
            count = len(data) if n is None else min(n, len(data))
            names += [f"{source}[{i}]" for i in range(count)]
            parts.append(data.samples[:count])
            if labels is not None and data.labels is not None and model.num_classes > 0:
                labels.append(data.labels[:count])
            else:
                labels = None
            levels.add(17 if data.name == "digits" else data_levels(model) if source == "heldout" else None)
        elif path.is_dir() or path.is_file():
            files = _files_of(path) if path.is_dir() else [path]
            if not files:
                raise DiffsightError(f"{path}: no PNG/JPEG images in it")
            files = files[: n or len(files)]
            names += [str(f) for f in files]
            parts.append(load_image_files(files, resolution=event[1], channels=event[0]))
            labels = None
            levels.add(256)
        else:
            raise DiffsightError(
                f"{source!r} is neither an image file, a folder, nor a dataset name ({', '.join(BUILTIN_DATASETS)}, "
                "heldout)"
            )
    if len(levels) > 1:
        raise DiffsightError("score files and datasets in separate calls: their grey levels differ")
    return names, torch.cat(parts), (torch.cat(labels) if labels else None), levels.pop()


def score_job(
    model: LoadedModel,
    sources: Sequence[str],
    *,
    n: int | None = None,
    label: int | None = None,
    points: int = 64,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> ScoredInputs:
    """Load and score; ``label`` sets the class of every input (conditional models: adds information maps)."""
    say = progress or (lambda _line: None)
    names, x, labels, levels = load_inputs(model, sources, n=n)
    if label is not None:
        labels = torch.full((len(x),), int(label), dtype=torch.long)
    say(f"scoring {len(x)} inputs with {model.name} ({points} log-SNR points each)")
    result = score_inputs(model, x, labels=labels, points=points, seed=seed, levels=levels)
    return ScoredInputs(names, x, labels, result)


def score_rows(scored: ScoredInputs, model: LoadedModel) -> list[dict[str, Any]]:
    """One JSON-ready dict per input."""
    r = scored.result
    rows = []
    for i, name in enumerate(scored.names):
        row: dict[str, Any] = {
            "input": name,
            "bits_per_dim": round(float(r.bits_per_dim[i]), 5),
            "bits_per_dim_stderr": round(float(r.bits_per_dim_stderr[i]), 5),
            "nll_nats": round(float(r.nll[i]), 4),
            "levels": r.levels,
        }
        if r.pmi is not None and scored.labels is not None:
            row["class"] = model.class_names[int(scored.labels[i])]
            row["pmi_nats"] = round(float(r.pmi[i]), 4)
            row["pmi_stderr"] = round(float(r.pmi_stderr[i]), 4) if r.pmi_stderr is not None else None
        rows.append(row)
    return rows


def write_score_report(scored: ScoredInputs, model: LoadedModel, path: str | Path, *, limit: int = 64) -> Path:
    """An offline HTML page: per input the image, its surprise map (bits per pixel), the information map when
    there is a class, and the denoising-error curve; ``limit`` inputs at most (the JSON holds them all)."""
    r = scored.result
    scale = max(1, 96 // scored.x.shape[-1])
    rows = score_rows(scored, model)
    cards = []
    top = float(r.surprise.max())
    for i in range(min(limit, len(rows))):
        row = rows[i]
        figures = [
            f"<figure>{image_tag(grid_png_bytes(scored.x[i : i + 1], nrow=1, scale=scale, pad=0), alt=row['input'])}"
            "<figcaption>input</figcaption></figure>",
            f"<figure>{image_tag(heatmap_png_bytes(r.surprise[i].clamp_min(0), scale=scale, vmax=top), alt='surprise')}"
            "<figcaption>surprise (bits per pixel)</figcaption></figure>",
        ]
        if r.pmi_map is not None:
            pmi = r.pmi_map[i].clamp_min(0)
            figures.append(
                f"<figure>{image_tag(heatmap_png_bytes(pmi, scale=scale), alt='information')}"
                "<figcaption>information about "
                f"class {html.escape(str(row.get('class')))} (nats per pixel)</figcaption></figure>"
            )
        curve = line_plot_svg(
            {"error": [float(v) for v in r.error_curve[i]]},
            [float(g) for g in r.gammas[i]],
            title="denoising error against log-SNR",
            x_label="log-SNR (high = little noise)",
            y_label="squared error",
            width=360,
            height=170,
        )
        head = f"{row['bits_per_dim']:.3f} &plusmn; {row['bits_per_dim_stderr']:.3f} bits/dim"
        if "pmi_nats" in row:
            head += f"; class {html.escape(str(row['class']))}: {row['pmi_nats']:.2f} nats of information"
        cards.append(
            f"<section><h3>{html.escape(row['input'])}</h3><p>{head}</p><div class='strip'>{''.join(figures)}"
            f"{curve}</div></section>"
        )
    levels = "continuous bits/dim" if r.levels is None else f"{r.levels}-level data, uniformly dequantised"
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>diffsight score: {html.escape(model.name)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:24px auto;padding:0 16px;color:#222}}
.strip{{display:flex;gap:12px;flex-wrap:wrap;align-items:flex-start}}figure{{margin:0;font-size:11px;color:#555;
text-align:center}}section{{border-top:1px solid #ddd;margin-top:16px}}img{{image-rendering:pixelated}}
</style></head><body>
<h1>How unusual are these inputs for {html.escape(model.name)}?</h1>
<p>diffsight {__version__}: negative log-likelihood from the information-theoretic estimator (Kong et al. 2023),
{r.nfe_per_image} network evaluations per input, {html.escape(levels)}. Surprise maps share one colour scale
(black 0, white {top:.3g} bits). {len(rows)} inputs; mean {sum(x["bits_per_dim"] for x in rows) / len(rows):.3f}
bits/dim.</p>
{"".join(cards)}
</body></html>
"""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(target, page.encode("utf-8"))
    return target


def format_rows(rows: list[dict[str, Any]]) -> str:
    """A plain-text table for the terminal."""
    width = max(len(r["input"]) for r in rows)
    lines = []
    for r in rows:
        text = f"{r['input']:<{width}}  {r['bits_per_dim']:8.4f} +- {r['bits_per_dim_stderr']:.4f} bits/dim"
        if "pmi_nats" in r:
            text += f"  class {r['class']}: {r['pmi_nats']:.3f} +- {r['pmi_stderr']:.3f} nats"
        lines.append(text)
    return "\n".join(lines)


def rows_json(rows: list[dict[str, Any]], model: LoadedModel, result: ScoreResult) -> str:
    return json.dumps(
        {
            "model": model.name,
            "nfe_per_input": result.nfe_per_image,
            "seconds": round(result.seconds, 3),
            "inputs": rows,
        },
        indent=2,
        allow_nan=False,
        default=lambda v: None if isinstance(v, float) and not math.isfinite(v) else str(v),
    )
