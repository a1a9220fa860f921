"""Any Explanation as a small self-contained HTML card (``Explanation._repr_html_``).

The card shows the method, the one-line summary, the trace it explains, the params and diagnostics, and each
value in the form its shape suggests (DESIGN.md, contract 5: "Report, viewer and API render any
Explanation"):

============================================  ==================================================================
value                                         rendered as
============================================  ==================================================================
``step``, ``sigma`` (M,)                      the x axis of the curves (sampler step), listed in the table
number, string, 0-d or 1-element tensor       a row of the values table
(M,) or any 1-D curve                         inline SVG line plot over the steps (over the index otherwise)
(M, V), V <= 32                               one line per column (V > 8: mean, min and max over the columns)
(C, H, W), C in 1..4                          an image thumbnail (values outside [-1.5, 1.5] scaled by max |v|)
(S, C, H, W)                                  a strip of image thumbnails, at most 10 rows
(H, W) or (S, H, W)                           a heat map, or a strip of heat maps on one scale (magnitude if signed)
dict factor -> (M,) curve                     one SVG with a line per factor
dict factor -> (M, V)                         one SVG per factor, a line per column
dict factor -> number or string               a table
============================================  ==================================================================

Everything is inline (PNG ``data:`` URIs, SVG) and every piece of text is escaped, so the card works offline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from diffsight.explain.explanation import Explanation
from diffsight.trace.html import (
    card,
    esc,
    fmt,
    heatmap_tag,
    image_thumbnails,
    line_plot_svg,
    pick_rows,
    table,
)

__all__ = ["explanation_html", "value_html"]

MAX_LINES = 8
MAX_CURVE_COLUMNS = 32
_AXES = ("step", "sigma")


def _as_tensor(value: Any) -> torch.Tensor | None:
    """A float tensor for tensors, arrays and (nested) lists of numbers; None for anything else."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, (np.ndarray, np.generic)):
        return torch.as_tensor(np.asarray(value))
    if isinstance(value, (list, tuple)) and value and not isinstance(value[0], (str, bytes, Mapping)):
        try:
            return torch.as_tensor(value, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            return None
    return None


def _is_scalar(value: Any) -> bool:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return True
    t = _as_tensor(value)
    return t is not None and t.numel() == 1


class _Axis:
    """The x axis the curves share: the explanation's ``step`` values when there are M of them."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        step = _as_tensor(values.get("step"))
        self.steps: list[float] | None = None if step is None else [float(s) for s in step.reshape(-1).tolist()]

    def x_for(self, length: int) -> tuple[list[float] | None, str]:
        if self.steps is not None and len(self.steps) == length:
            return self.steps, "sampler step"
        return None, "index"

    def label(self, row: int, count: int) -> str:
        if self.steps is not None and len(self.steps) == count:
            return f"step {int(self.steps[row])}"
        return f"row {row}"


def _curves(t: torch.Tensor) -> dict[str, list[float]]:
    """(M,) -> one series; (M, V) -> one per column (V > 8: mean, min, max over the columns)."""
    t = t.double()
    if t.dim() == 1:
        return {"value": t.tolist()}
    if t.shape[1] <= MAX_LINES:
        return {f"[{j}]": t[:, j].tolist() for j in range(t.shape[1])}
    return {
        f"mean of {t.shape[1]}": t.mean(1).tolist(),
        "min": t.min(1).values.tolist(),
        "max": t.max(1).values.tolist(),
    }


def _image_like(t: torch.Tensor) -> torch.Tensor:
    """Values for an image thumbnail: as they are when they look like data in [-1, 1], else scaled by max |v|."""
    t = t.float()
    top = float(t.abs().max()) if t.numel() else 0.0
    return t if top <= 1.5 else t / top


def _map_strip(maps: torch.Tensor, axis: _Axis, name: str) -> str:
    """(S, H, W) maps as a strip of heat maps on one scale."""
    signed = bool((maps < 0).any())
    mags = maps.float().abs()
    rows = pick_rows(maps.shape[0])
    vmax = float(mags[rows].max()) if mags.numel() else 0.0
    heads = "".join(f"<td>{esc(axis.label(r, maps.shape[0]))}</td>" for r in rows)
    cells = "".join(
        f"<td>{heatmap_tag(mags[r], alt=f'{name} {axis.label(r, maps.shape[0])}', vmax=vmax or None)}</td>"
        for r in rows
    )
    note = " (magnitude)" if signed else ""
    scale = f'<p class="note">{esc(f"shared scale 0..{vmax:.3g}{note}")}</p>'
    return f'{scale}<table class="strip"><tr>{heads}</tr><tr>{cells}</tr></table>'


def _image_strip(images: torch.Tensor, axis: _Axis, name: str) -> str:
    """(S, C, H, W) as a strip of thumbnails."""
    rows = pick_rows(images.shape[0])
    shown = torch.stack([_image_like(images[r]) for r in rows])  # (s, C, H, W), each row on its own scale
    heads = "".join(f"<td>{esc(axis.label(r, images.shape[0]))}</td>" for r in rows)
    cells = "".join(
        f"<td>{image_thumbnails(shown[i : i + 1], alt=f'{name} {axis.label(r, images.shape[0])}')}</td>"
        for i, r in enumerate(rows)
    )
    return f'<table class="strip"><tr>{heads}</tr><tr>{cells}</tr></table>'


def _tensor_html(name: str, t: torch.Tensor, axis: _Axis, title: str = "") -> str | None:
    """The rendering of one tensor value by its shape, or None when it has no picture (listed in the table)."""
    if not (t.is_floating_point() or t.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.bool)):
        return None
    t = t.double() if t.dtype == torch.bool else t
    shape = tuple(t.shape)
    if len(shape) == 1 and shape[0] > 1:
        x, x_label = axis.x_for(shape[0])
        return line_plot_svg(_curves(t), x, title=title, x_label=x_label)
    if len(shape) == 2 and axis.x_for(shape[0])[0] is not None and shape[1] <= MAX_CURVE_COLUMNS:
        x, x_label = axis.x_for(shape[0])
        return line_plot_svg(_curves(t), x, title=title, x_label=x_label)
    if len(shape) == 2 and min(shape) >= 4:
        signed = bool((t < 0).any())
        note = " (magnitude)" if signed else ""
        return f'<p class="note">{esc(f"{name}{note}")}</p>' + heatmap_tag(t.float().abs(), alt=name)
    if len(shape) == 3 and 1 <= shape[0] <= 4 and min(shape[1:]) >= 4:
        return image_thumbnails(_image_like(t)[None], alt=name)
    if len(shape) == 3 and min(shape[1:]) >= 4:
        return _map_strip(t, axis, name)
    if len(shape) == 4 and 1 <= shape[1] <= 4 and min(shape[2:]) >= 4:
        return _image_strip(t, axis, name)
    if len(shape) == 2 and shape[0] > 1 and shape[1] <= MAX_CURVE_COLUMNS:
        return line_plot_svg(_curves(t), None, title=title, x_label="index")
    return None


def _dict_html(name: str, value: Mapping[str, Any], axis: _Axis) -> str | None:
    """factor -> curve: one plot; factor -> (M, V): one plot per factor; factor -> scalar: a table."""
    if not value:
        return None
    if all(_is_scalar(v) for v in value.values()):
        return table(((k, _scalar(v)) for k, v in value.items()), head=(name, "value"))
    tensors = {str(k): _as_tensor(v) for k, v in value.items()}
    if all(t is not None and t.dim() == 1 and t.numel() > 1 for t in tensors.values()):
        lengths = {t.numel() for t in tensors.values() if t is not None}
        if len(lengths) == 1:
            x, x_label = axis.x_for(lengths.pop())
            series = {k: t.double().tolist() for k, t in list(tensors.items())[:MAX_LINES] if t is not None}
            return line_plot_svg(series, x, x_label=x_label)
    parts = []
    for k, t in tensors.items():
        shown = _tensor_html(f"{name}: {k}", t, axis, title=k) if t is not None else None
        parts.append(shown if shown is not None else f"<p>{esc(k)}: {esc(fmt(value[k]))}</p>")
    return "".join(parts)


def _scalar(value: Any) -> Any:
    t = _as_tensor(value)
    return t.item() if t is not None and t.numel() == 1 else value


def value_html(name: str, value: Any, axis: _Axis | None = None) -> str | None:
    """The picture of one named value (SVG, thumbnails, heat maps, table), or None when a table row will do."""
    axis = axis if axis is not None else _Axis({})
    if isinstance(value, Mapping):
        return _dict_html(name, value, axis)
    t = _as_tensor(value)
    return None if t is None or t.numel() <= 1 else _tensor_html(name, t, axis)


def _axis_text(values: Mapping[str, Any]) -> list[tuple[str, Any]]:
    rows = []
    for key in _AXES:
        t = _as_tensor(values.get(key))
        if t is not None:
            flat = [v for v in t.reshape(-1).tolist()]
            shown = [int(v) for v in flat] if key == "step" else [float(f"{v:.4g}") for v in flat]
            rows.append((key, shown))
    return rows


def explanation_html(expl: Explanation) -> str:
    """The Explanation as a self-contained HTML fragment (no external resources)."""
    axis = _Axis(expl.values)
    head = [("method", expl.method)]
    if expl.trace_id:
        head.append(("trace id", expl.trace_id))
    body = [f"<p>{esc(expl.summary)}</p>" if expl.summary else "", table(head)]
    scalars: list[tuple[str, Any]] = _axis_text(expl.values)
    pictures: list[str] = []
    for name, value in expl.values.items():
        if name in _AXES:
            continue
        picture = value_html(name, value, axis)
        if picture is None:
            scalars.append((name, _scalar(value)))
        else:
            pictures.append(f"<h4>{esc(name)}</h4>{picture}")
    if scalars:
        body.append("<h4>Values</h4>" + table(scalars))
    body.extend(pictures)
    if expl.params:
        body.append("<h4>Parameters</h4>" + table(expl.params.items()))
    if expl.diagnostics:
        body.append("<h4>Diagnostics</h4>" + table(expl.diagnostics.items()))
    return card(f"diffsight explanation: {expl.method}", "".join(body))
