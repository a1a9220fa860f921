"""The Trace as a small self-contained HTML card (``Trace._repr_html_``), and the pieces it is built from.

A notebook shows ``trace`` as: a table of the run (model, sampler, steps, NFE, seed, class, guidance, id), the
final samples, and a strip of x0_hat thumbnails at up to ten recorded steps, so one sees the estimate of the
sample sharpen from the posterior mean to the sample (xai.md, section 2). A vector trace (event ``(D,)``)
shows its final values and an SVG plot of x0_hat of sample 0 along the steps instead of images.

Everything is inline: PNGs as ``data:`` URIs (:mod:`diffsight.data.image_io`), plots as inline SVG drawn
here, every piece of text escaped with :func:`html.escape`. Nothing is fetched, so the card also works in an
offline HTML file (DESIGN.md, "Artifacts"). The building blocks (:func:`table`, :func:`image_tag`,
:func:`image_thumbnails`, :func:`line_plot_svg`) are reused by the Explanation card
(:mod:`diffsight.explain.html`), which sits above this layer.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from diffsight.data.image_io import grid_png_bytes, heatmap_png_bytes, png_data_uri
from diffsight.trace.record import Trace

__all__ = [
    "PALETTE",
    "card",
    "esc",
    "fmt",
    "heatmap_tag",
    "image_tag",
    "image_thumbnails",
    "line_plot_svg",
    "pick_rows",
    "table",
    "trace_html",
]

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
MAX_STRIP = 10  # recorded steps shown in a thumbnail strip
MAX_FINALS = 16  # final samples shown
MAX_SIDE = 96  # thumbnails larger than this (pixels) are downsampled before encoding

_STYLE = (
    "<style>"
    ".diffsight-card{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:13px;color:#222;"
    "max-width:1100px}"
    ".diffsight-card h3{font-size:15px;margin:6px 0}.diffsight-card h4{font-size:13px;margin:10px 0 4px}"
    ".diffsight-card table{border-collapse:collapse;margin:4px 0}"
    ".diffsight-card td,.diffsight-card th{border:1px solid #ddd;padding:2px 6px;text-align:left;"
    "vertical-align:top}"
    ".diffsight-card th{background:#f4f4f4;font-weight:600}"
    ".diffsight-card img{image-rendering:pixelated;display:block}"
    ".diffsight-card .strip td{text-align:center;font-size:11px;color:#555}"
    ".diffsight-card .note{color:#666;font-size:12px}"
    "</style>"
)


# --- text -----------------------------------------------------------------------------------------------------


def esc(value: Any) -> str:
    """``value`` as text, HTML-escaped (quotes too, so it is safe inside attributes)."""
    return html.escape(str(value), quote=True)


def fmt(value: Any, *, max_items: int = 8) -> str:
    """A short, readable, *unescaped* rendering of a parameter or diagnostic value."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, torch.Tensor):
        if value.numel() == 1:
            return fmt(value.item())
        return f"tensor {list(value.shape)} {str(value.dtype).removeprefix('torch.')}"
    if hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, (str, bytes)):
        return fmt(torch.as_tensor(value))  # numpy arrays and scalars
    if isinstance(value, Mapping):
        items = list(value.items())
        body = ", ".join(f"{k}: {fmt(v, max_items=4)}" for k, v in items[:max_items])
        return "{" + body + (", ..." if len(items) > max_items else "") + "}"
    if isinstance(value, (list, tuple)):
        body = ", ".join(fmt(v, max_items=4) for v in value[:max_items])
        more = f", ... ({len(value)} in all)" if len(value) > max_items else ""
        return "[" + body + more + "]"
    return str(value)


def table(rows: Iterable[tuple[Any, Any]], *, head: tuple[str, str] | None = None) -> str:
    """A two-column key/value table; keys and values are formatted with :func:`fmt` and escaped."""
    out = ["<table>"]
    if head is not None:
        out.append(f"<tr><th>{esc(head[0])}</th><th>{esc(head[1])}</th></tr>")
    for key, value in rows:
        out.append(f"<tr><th>{esc(key)}</th><td>{esc(fmt(value))}</td></tr>")
    out.append("</table>")
    return "".join(out)


def card(title: str, body: str) -> str:
    """Wrap ``body`` (already HTML) in the styled container with an escaped title."""
    return f'<div class="diffsight-card">{_STYLE}<h3>{esc(title)}</h3>{body}</div>'


# --- images ---------------------------------------------------------------------------------------------------


def _displayable(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, 1 or 3, h, w) float32 in [-1, 1]: other channel counts averaged to grey, large
    images downsampled to at most :data:`MAX_SIDE` pixels a side."""
    x = images.detach().float().cpu()
    if x.shape[1] not in (1, 3):
        x = x.mean(1, keepdim=True)  # (N, 1, H, W)
    side = max(x.shape[-2:])
    if side > MAX_SIDE:
        x = F.interpolate(x, scale_factor=MAX_SIDE / side, mode="area")
    return x


def _scale_for(height: int, target: int = 48) -> int:
    return max(1, min(8, target // max(1, height)))


def image_tag(png: bytes, *, alt: str, title: str | None = None) -> str:
    """An ``<img>`` with the PNG inline; ``alt`` and ``title`` escaped."""
    extra = f' title="{esc(title)}"' if title is not None else ""
    return f'<img src="{png_data_uri(png)}" alt="{esc(alt)}"{extra}>'


def image_thumbnails(images: torch.Tensor, *, alt: str, nrow: int | None = None, target: int = 48) -> str:
    """(N, C, H, W) images in [-1, 1] as one inline PNG grid, each image about ``target`` pixels high."""
    x = _displayable(images)
    return image_tag(grid_png_bytes(x, nrow=nrow, scale=_scale_for(x.shape[-2], target)), alt=alt)


def heatmap_tag(values: torch.Tensor, *, alt: str, vmax: float | None = None, target: int = 48) -> str:
    """A non-negative (H, W) map as an inline heat-map PNG (black to yellow-white)."""
    v = values.detach().float().cpu()
    side = max(v.shape)
    if side > MAX_SIDE:
        v = F.interpolate(v[None, None], scale_factor=MAX_SIDE / side, mode="area")[0, 0]
    return image_tag(heatmap_png_bytes(v, scale=_scale_for(v.shape[0], target), vmax=vmax), alt=alt)


def pick_rows(count: int, limit: int = MAX_STRIP) -> list[int]:
    """At most ``limit`` row indices spread evenly over ``range(count)``, first and last included."""
    if count <= limit:
        return list(range(count))
    return sorted({round(i * (count - 1) / (limit - 1)) for i in range(limit)})


# --- SVG line plot --------------------------------------------------------------------------------------------


def _ticks(lo: float, hi: float) -> list[float]:
    """Up to ~5 round tick values covering [lo, hi]."""
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / 4
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if m * step >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def line_plot_svg(
    series: Mapping[str, Sequence[float]],
    x: Sequence[float] | None = None,
    *,
    title: str = "",
    x_label: str = "",
    y_label: str = "",
    width: int = 380,
    height: int = 170,
    bands: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    markers: Sequence[tuple[float, str]] = (),
    y_range: tuple[float, float] | None = None,
) -> str:
    """An inline SVG with one polyline per entry of ``series`` (label -> y values) over ``x``.

    ``x`` defaults to 0, 1, 2, ...; non-finite y values break the line. Axes carry round ticks; a legend names
    the series when there are several. ``bands`` (label -> (low, high)) shades an interval behind a series,
    ``markers`` draws labelled dashed vertical lines at x values, ``y_range`` fixes the y axis (values outside
    are clipped to it). All text is escaped.
    """
    named = {str(k): [float(v) for v in vals] for k, vals in series.items()}
    n = max((len(v) for v in named.values()), default=0)
    xs = [float(v) for v in x] if x is not None else [float(i) for i in range(n)]
    finite = [v for vals in named.values() for v in vals if math.isfinite(v)]
    left, right, top, bottom = 46, 10 + (110 if len(named) > 1 else 0), 18 if title else 8, 30
    pw, ph = width - left - right, height - top - bottom
    parts = [
        f'<svg width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="10">'
    ]
    if title:
        parts.append(f'<text x="{left}" y="12" font-size="11" font-weight="600">{esc(title)}</text>')
    if not finite or not xs:
        parts.append(f'<text x="{left}" y="{top + ph / 2:.1f}" fill="#888">no finite values</text></svg>')
        return "".join(parts)
    y_lo, y_hi = (min(finite), max(finite)) if y_range is None else (float(y_range[0]), float(y_range[1]))
    if y_hi - y_lo < 1e-12:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    x_lo, x_hi = min(xs), max(xs)
    if x_hi - x_lo < 1e-12:
        x_lo, x_hi = x_lo - 0.5, x_hi + 0.5

    def px(v: float) -> float:
        return left + (v - x_lo) / (x_hi - x_lo) * pw

    def py(v: float) -> float:
        return top + (1 - (min(max(v, y_lo), y_hi) - y_lo) / (y_hi - y_lo)) * ph

    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#bbb"/>')
    for t in _ticks(y_lo, y_hi):
        parts.append(
            f'<line x1="{left - 3}" y1="{py(t):.1f}" x2="{left}" y2="{py(t):.1f}" stroke="#888"/>'
            f'<text x="{left - 5}" y="{py(t) + 3:.1f}" text-anchor="end">{esc(f"{t:.3g}")}</text>'
        )
    for t in _ticks(x_lo, x_hi):
        parts.append(
            f'<line x1="{px(t):.1f}" y1="{top + ph}" x2="{px(t):.1f}" y2="{top + ph + 3}" stroke="#888"/>'
            f'<text x="{px(t):.1f}" y="{top + ph + 13}" text-anchor="middle">{esc(f"{t:.3g}")}</text>'
        )
    if x_label:
        parts.append(f'<text x="{left + pw / 2:.1f}" y="{height - 3}" text-anchor="middle">{esc(x_label)}</text>')
    if y_label:
        parts.append(
            f'<text x="10" y="{top + ph / 2:.1f}" text-anchor="middle" '
            f'transform="rotate(-90 10 {top + ph / 2:.1f})">{esc(y_label)}</text>'
        )
    for xm, label in markers:
        parts.append(
            f'<line x1="{px(float(xm)):.1f}" y1="{top}" x2="{px(float(xm)):.1f}" y2="{top + ph}" stroke="#888" '
            f'stroke-dasharray="3,3"/><text x="{px(float(xm)) + 2:.1f}" y="{top + 9}" fill="#555">{esc(label)}</text>'
        )
    for i, (label, ys) in enumerate(named.items()):
        colour = PALETTE[i % len(PALETTE)]
        if bands and label in bands:
            low, high = ([float(v) for v in b] for b in bands[label])
            keep = [j for j in range(min(len(xs), len(low), len(high))) if math.isfinite(low[j] + high[j])]
            upper = [f"{px(xs[j]):.1f},{py(high[j]):.1f}" for j in keep]
            lower = [f"{px(xs[j]):.1f},{py(low[j]):.1f}" for j in reversed(keep)]
            parts.append(f'<polygon points="{" ".join(upper + lower)}" fill="{colour}" fill-opacity="0.15"/>')
        runs: list[list[str]] = [[]]
        for xv, yv in zip(xs, ys, strict=False):
            if math.isfinite(yv):
                runs[-1].append(f"{px(xv):.1f},{py(yv):.1f}")
            elif runs[-1]:
                runs.append([])
        for run in runs:
            if len(run) == 1:
                cx, cy = run[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{colour}"/>')
            elif run:
                parts.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
        if len(named) > 1:
            ly = top + 10 + 13 * i
            parts.append(
                f'<line x1="{width - right + 8}" y1="{ly - 3}" x2="{width - right + 22}" y2="{ly - 3}" '
                f'stroke="{colour}" stroke-width="2"/><text x="{width - right + 26}" y="{ly}">{esc(label[:18])}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


# --- the trace card -------------------------------------------------------------------------------------------


def _classes(trace: Trace) -> str:
    m = trace.meta
    names = m.get("class_names") or m.get("labels")
    if names is None:
        return "none (unconditional)"
    unique = list(dict.fromkeys(str(v) for v in names))
    return unique[0] if len(unique) == 1 else f"{len(unique)} classes: " + ", ".join(unique[:8])


def _run_rows(trace: Trace) -> list[tuple[str, Any]]:
    m = trace.meta
    model = m.get("model") or {}
    return [
        ("trace id", trace.id),
        ("model", model.get("name", "?")),
        ("sampler", m.get("sampler", "?")),
        ("steps", trace.num_steps),
        ("NFE", m.get("nfe", "?")),
        ("seed", m.get("seed")),
        ("class", _classes(trace)),
        ("guidance", m.get("guidance", 1.0)),
        ("samples", f"{trace.batch_size} x {tuple(trace.event_shape)}"),
        ("recorded steps", f"{len(trace.step_index)} (stride {m.get('stride', 1)}, {m.get('dtype', '?')})"),
        ("sigma", f"{float(trace.sigmas[0]):.4g} -> {float(trace.sigmas[-1]):.4g}"),
        ("size", f"{trace.nbytes() / 1e6:.2f} MB"),
    ]


def _strip(trace: Trace, samples: int = 4) -> str:
    """A table: one column per chosen recorded step (header: step and sigma), x0_hat of the first samples."""
    rows = pick_rows(len(trace.step_index))
    steps, sigma = trace.step_index, trace.tensors["sigma"]
    n = min(samples, trace.batch_size)
    heads = "".join(f"<td>step {steps[r]}<br>&sigma; {float(sigma[r]):.3g}</td>" for r in rows)
    cells = "".join(
        f"<td>{image_thumbnails(trace.x0_hat[r, :n], alt=f'x0_hat at step {steps[r]}', nrow=1)}</td>" for r in rows
    )
    return f'<table class="strip"><tr>{heads}</tr><tr>{cells}</tr></table>'


def _vector_body(trace: Trace) -> str:
    final = trace.final.float()  # (B, D)
    d = final.shape[1]
    rows = [(f"sample {i}", [round(float(v), 4) for v in final[i, :8]]) for i in range(min(8, trace.batch_size))]
    x0 = trace.x0_hat[:, 0].float().reshape(len(trace.step_index), -1)  # (S, D)
    series = {f"x[{j}]": x0[:, j].tolist() for j in range(min(d, 8))}
    plot = line_plot_svg(series, trace.step_index, title="x0_hat of sample 0", x_label="sampler step", y_label="value")
    note = "" if d <= 8 else f'<p class="note">first 8 of {d} coordinates shown</p>'
    return f"<h4>Final samples</h4>{table(rows)}<h4>Along the run</h4>{plot}{note}"


def trace_html(trace: Trace) -> str:
    """The Trace as a self-contained HTML fragment (no external resources)."""
    body = [table(_run_rows(trace))]
    if "decoded.final" in trace.tensors:  # a latent model's run: draw the decoded images (trace/latent.py)
        from diffsight.trace.latent import decoded_view

        trace = decoded_view(trace)
    if trace.is_image:
        n = min(MAX_FINALS, trace.batch_size)
        more = f" (first {n} of {trace.batch_size})" if n < trace.batch_size else ""
        body.append(f"<h4>Final samples{esc(more)}</h4>")
        body.append(image_thumbnails(trace.final[:n], alt="final samples", nrow=min(n, 8)))
        body.append(f"<h4>x0_hat along the run (first {min(4, trace.batch_size)} samples)</h4>")
        body.append(_strip(trace))
    elif len(trace.event_shape) == 1:
        body.append(_vector_body(trace))
    else:
        body.append(f'<p class="note">event shape {esc(trace.event_shape)}: no preview</p>')
    return card(f"diffsight trace {trace.id}", "".join(body))
