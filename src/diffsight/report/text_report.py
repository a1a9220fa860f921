"""One offline HTML page for a text-to-image run: image, word maps (all steps and per step), interventions,
conditional information, and the attention-mass check. Everything is inline (PNG data URIs), nothing is fetched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from diffsight.atomic import write_bytes_atomic
from diffsight.data.image_io import grid_png_bytes, heatmap_png_bytes
from diffsight.explain.text_conditioning import InterventionResult, TextSample, WordInformation
from diffsight.trace.html import card, esc, image_tag, table

__all__ = ["attention_report_html", "write_attention_report"]

MAX_STEP_COLUMNS = 10
_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5em;max-width:80em}} td,th{{padding:2px 6px}}
img{{image-rendering:pixelated}} .strip td{{text-align:center;font-size:80%}}</style></head>
<body><h1>{title}</h1>{body}</body></html>"""


def _heat(values: torch.Tensor, side: int, lo: float | None = None, hi: float | None = None) -> str:
    """A heat map stretched from ``lo`` (black) to ``hi`` (white), default the map's own min and max (as DAAM
    displays its maps)."""
    v = values.detach().float().cpu()
    lo = float(v.min()) if lo is None else lo
    hi = float(v.max()) if hi is None else hi
    scale = max(1, side // max(1, v.shape[-1]))
    return image_tag(heatmap_png_bytes((v - lo).clamp_min(0), scale=scale, vmax=hi - lo), alt="attention map")


def _image(images: torch.Tensor, side: int) -> str:
    scale = max(1, side // max(1, images.shape[-1]))
    return image_tag(grid_png_bytes(images.detach().float().cpu(), nrow=1, scale=scale, pad=0), alt="image")


def _num(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "n/a"


def attention_report_html(
    sample: TextSample,
    *,
    interventions: Sequence[InterventionResult] = (),
    information: Sequence[WordInformation] = (),
    title: str = "diffsight text-to-image report",
    side: int = 128,
) -> str:
    """The report page as a string (see the module docstring)."""
    tokens = sample.tokens
    size = (sample.images.shape[-2], sample.images.shape[-1])
    head = [
        ("prompt", tokens.prompt),
        ("sampler", sample.sampler),
        ("steps", int(sample.sigmas.numel() - 1)),
        ("guidance", sample.guidance),
        ("seed", sample.seed),
    ]
    body = [card("Run", _image(sample.images, side) + table(head))]
    if sample.attention is not None:
        att = sample.attention
        maps = sample.word_maps(size)  # (words, H, W)
        cells = "".join(
            f"<td>{_heat(maps[i], side)}<br>{esc(w)}</td>" for i, w in enumerate(tokens.words) if tokens.spans[i]
        )
        body.append(
            card(
                "Word maps, all steps (DAAM sum)",
                "<p>Cross-attention of each word (mean over its sub-tokens), upsampled to the image, summed over "
                "every UNet evaluation and averaged over layers; each map stretched from its minimum to its "
                "maximum.</p>"
                f'<table class="strip"><tr>{cells}</tr></table>',
            )
        )
        steps = sample.step_word_maps()  # (S, words, h, w)
        pick = torch.linspace(0, steps.shape[0] - 1, min(MAX_STEP_COLUMNS, steps.shape[0])).round().long().unique()
        rows = []
        for i, w in enumerate(tokens.words):
            if not tokens.spans[i]:
                continue
            lo, hi = float(steps[pick, i].min()), float(steps[pick, i].max())
            heats = "".join(f"<td>{_heat(steps[s, i], side // 2, lo, hi)}</td>" for s in pick.tolist())
            rows.append(f"<tr><th>{esc(w)}</th>{heats}</tr>")
        labels = "".join(f"<td>step {att.steps[s]}</td>" for s in pick.tolist())
        body.append(
            card(
                "Word maps per step",
                "<p>When each word's attention settles where: one column per recorded step (one colour scale per "
                "row, from its minimum to its maximum).</p>"
                f'<table class="strip"><tr><th></th>{labels}</tr>{"".join(rows)}</table>',
            )
        )
        body.append(
            card(
                "Checks",
                table(
                    [
                        ("recorded layers", len(att.layers)),
                        ("recorded UNet evaluations", len({r.evaluation for r in att.records})),
                        ("max |sum over tokens - 1| (attention mass)", float(att.mass().max())),
                    ]
                ),
            )
        )
    if interventions:
        rows = []
        for r in interventions:
            change = F.interpolate(r.delta[None, None], size=r.word_map.shape, mode="nearest")[0, 0]
            rows.append(
                f"<tr><td>{esc(r.kind)} <b>{esc(r.word)}</b><br><small>{esc(r.prompt)}</small></td>"
                f"<td>{_image(r.images, side // 2)}</td><td>{_heat(change, side // 2, 0.0)}</td>"
                f"<td>{_heat(r.word_map, side // 2)}</td><td>{_num(r.change)}</td>"
                f"<td>{_num(r.spearman)}</td><td>{_num(r.auroc)}</td></tr>"
            )
        body.append(
            card(
                "Prompt interventions (same noise)",
                "<p>Each edit re-runs the sampler from the same initial latents with the same sampler noise, so the "
                "change is caused by the edit alone. Spearman: rank correlation of the word's map with |change|; "
                "AUROC: how well the map finds the 10% most changed pixels (0.5 = chance).</p>"
                '<table class="strip"><tr><th>edit</th><th>image</th><th>|change|</th><th>word map</th>'
                f"<th>mean change</th><th>Spearman</th><th>AUROC</th></tr>{''.join(rows)}</table>",
            )
        )
    if information:
        rows = "".join(
            f"<tr><td>{esc(w.word)}</td><td>{_num(w.value)} &plusmn; {_num(w.stderr)}</td>"
            f"<td>{_heat(w.pixel_map.clamp_min(0), side // 2, 0.0)}</td></tr>"
            for w in information
        )
        body.append(
            card(
                "Conditional information per word",
                "<p>i(x; word | rest of prompt) in nats (Info-Decomp): how much more likely the final latents are "
                "with the word than without it; the per-pixel map sums to the value (shown: its positive part).</p>"
                f'<table class="strip"><tr><th>word</th><th>nats</th><th>map</th></tr>{rows}</table>',
            )
        )
    return _PAGE.format(title=esc(title), body="".join(body))


def write_attention_report(path: str | Path, sample: TextSample, **kwargs: object) -> Path:
    """Write :func:`attention_report_html` to ``path`` atomically; returns the path."""
    target = Path(path)
    write_bytes_atomic(target, attention_report_html(sample, **kwargs).encode("utf-8"))  # type: ignore[arg-type]
    return target
