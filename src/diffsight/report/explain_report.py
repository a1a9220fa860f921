"""The explanation report: one offline HTML file per call, with each explained run's Trace saved beside it.

Every image is an inline PNG (data URI) and every chart inline SVG; the page loads nothing from anywhere, so it
opens from a laptop, an e-mail attachment or an air-gapped review machine. Each section names the Trace (id and
file) it was computed from (DESIGN.md, contract 4).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from diffsight._version import __version__
from diffsight.atomic import write_bytes_atomic
from diffsight.data.image_io import grid_png_bytes, heatmap_png_bytes
from diffsight.explain.explanation import Explanation, jsonable
from diffsight.explain.run import ExplainedRun
from diffsight.trace.html import image_tag, line_plot_svg, pick_rows
from diffsight.trace.io import save_trace
from diffsight.trace.latent import decoded_view, is_latent_trace

__all__ = ["ReportResult", "write_explanation_report"]


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#222;
line-height:1.45;padding:0 16px}
h1{font-size:24px}h2{font-size:19px;margin-top:36px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:20px 0 6px}
table.meta{border-collapse:collapse;font-size:13px}table.meta td,table.meta th{border:1px solid #ddd;
padding:3px 8px;text-align:left;vertical-align:top}
.strip{display:flex;gap:6px;flex-wrap:wrap;align-items:flex-end}.strip figure{margin:0;text-align:center;
font-size:10px;color:#555}.strip img,.big img{image-rendering:pixelated}
.charts{display:flex;flex-wrap:wrap;gap:14px}.narrative li{margin:4px 0}
.note{font-size:12px;color:#666}code{font-size:12px;background:#f4f4f4;padding:1px 4px}
details{margin:8px 0}summary{cursor:pointer;font-size:13px}
"""


@dataclass(frozen=True)
class ReportResult:
    """Where the report went, and the Trace file written for each run."""

    path: Path
    traces: list[Path]


def _strip(images: torch.Tensor, steps: Sequence[int], sigmas: Sequence[float], label: str, *, scale: int) -> str:
    figures = []
    for i in pick_rows(len(steps)):
        png = grid_png_bytes(images[i : i + 1], nrow=1, scale=scale, pad=0)
        figures.append(
            f"<figure>{image_tag(png, alt=f'{label} at step {steps[i]}')}<figcaption>step {steps[i]}<br>"
            f"&sigma; {sigmas[i]:.3g}</figcaption></figure>"
        )
    return f'<h3>{html.escape(label)}</h3><div class="strip">{"".join(figures)}</div>'


def _map_strip(maps: torch.Tensor, steps: Sequence[int], sigmas: Sequence[float], label: str, *, scale: int) -> str:
    top = float(maps.max()) if maps.numel() else 0.0
    figures = []
    for i in pick_rows(len(steps)):
        png = heatmap_png_bytes(maps[i], scale=scale, vmax=top)
        figures.append(
            f"<figure>{image_tag(png, alt=f'{label} at step {steps[i]}')}<figcaption>step {steps[i]}<br>"
            f"&sigma; {sigmas[i]:.3g}</figcaption></figure>"
        )
    note = f'<p class="note">one colour scale for the row: black 0, white {top:.3g}</p>'
    return f'<h3>{html.escape(label)}</h3><div class="strip">{"".join(figures)}</div>{note}'


def _table(items: dict[str, Any]) -> str:
    rows = []
    for key, value in items.items():
        text = value if isinstance(value, str) else json.dumps(jsonable(value))
        rows.append(f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(str(text))}</td></tr>")
    return f'<table class="meta">{"".join(rows)}</table>'


def _floats(t: Any) -> list[float]:
    return [float(v) for v in torch.as_tensor(t, dtype=torch.float64).reshape(-1).tolist()]


def _commitment_chart(c: Explanation, n: int) -> str:
    steps = _floats(c.values["step"])
    series = {f: _floats(a) for f, a in c.values["agreement"].items()}
    bands = {f: (_floats(c.values["ci_low"][f]), _floats(c.values["ci_high"][f])) for f in series}
    threshold = float(c.params.get("threshold", 0.9))
    by_step: dict[int, list[str]] = {}
    for factor, step in c.values["decided_step"].items():
        if int(step) >= 0:
            by_step.setdefault(int(step), []).append(factor)
    markers = [(float(step), ", ".join(names)) for step, names in sorted(by_step.items())]
    return line_plot_svg(
        series,
        steps,
        bands=bands,
        width=480,
        height=230,
        title=f"Commitment: agreement of {c.params.get('k')} continuations",
        x_label=f"sampler step branched from (of {n})",
        y_label=f"share agreeing (decided >= {threshold:g})",
        y_range=(0.0, 1.0),
        markers=markers,
    )


def _probe_chart(p: Explanation, n: int) -> str:
    steps = _floats(p.values["step"])
    series = {}
    for f, probs in p.values["probabilities"].items():
        names = list(p.values["value_names"][f])
        final = p.values["final_value"][f]
        column = names.index(final) if final in names else int(torch.as_tensor(probs)[-1].argmax())
        series[f"{f} = {final}"] = _floats(torch.as_tensor(probs)[:, column])
    return line_plot_svg(
        series,
        steps,
        width=480,
        height=230,
        title="Probes on x0_hat: probability of the final value",
        x_label=f"sampler step (of {n})",
        y_label="probability",
        y_range=(0.0, 1.0),
    )


def _spectral_chart(s: Explanation, n: int) -> str:
    steps = _floats(s.values["step"])
    power = torch.as_tensor(s.values["band_power"], dtype=torch.float64)  # (S, bands)
    final = power[-1].clamp_min(1e-30)
    edges = _floats(s.values["band_edges"])
    series = {
        f"{edges[b]:.2g}-{edges[b + 1]:.2g} cyc/px": _floats(power[:, b] / final[b]) for b in range(power.shape[1])
    }
    return line_plot_svg(
        series,
        steps,
        width=480,
        height=230,
        title="Spectrum of x0_hat: band power / final power",
        x_label=f"sampler step (of {n})",
        y_label="relative power",
        y_range=(0.0, 1.5),
    )


def _scalar_chart(f: Explanation, n: int) -> str:
    steps = _floats(f.values["step"])
    return line_plot_svg(
        {
            "change of x0_hat": _floats(f.values["x0_change"]),
            "distance to final": _floats(f.values["distance_to_final"]),
        },
        steps,
        width=480,
        height=230,
        title="Filmstrip scalars",
        x_label=f"sampler step (of {n})",
        y_label="RMS (data units)",
    )


def _guidance_chart(g: Explanation, n: int) -> str:
    return line_plot_svg(
        {"RMS of D(x|c) - D(x|null)": _floats(g.values["magnitude"])},
        _floats(g.values["step"]),
        width=480,
        height=230,
        title="Where in time the condition acts",
        x_label=f"sampler step (of {n})",
        y_label="RMS difference",
    )


def _run_section(index: int, run: ExplainedRun, trace_file: str, scale: int) -> str:
    t = decoded_view(run.trace) if is_latent_trace(run.trace) else run.trace  # latent models: draw decoded images
    e = run.explanations
    n = t.num_steps
    m = t.meta
    title = f"Sample {index + 1}: seed {m.get('seed')}"
    if m.get("class_names"):
        title += f", class {m['class_names'][0]}"
    head = _table(
        {
            "model": f"{m['model'].get('name')} (weights sha256 {str(m['model'].get('sha256'))[:16]}...)",
            "sampler": f"{m['sampler']}, {n} steps, {m.get('nfe')} network evaluations",
            "guidance": m.get("guidance"),
            "trace": f"{t.id} (file {trace_file}; replay: diffsight explain {trace_file})",
        }
    )
    parts = [f'<h2 id="run-{index}">{html.escape(title)}</h2>', head]
    parts.append('<h3>What happened, in numbers</h3><ul class="narrative">')
    parts += [f"<li>{html.escape(line)}</li>" for line in run.narrative]
    parts.append("</ul>")
    if t.is_image:
        final = grid_png_bytes(t.final[:1], nrow=1, scale=scale * 2, pad=0)
        parts.append(f'<div class="big">{image_tag(final, alt="the final sample")}</div>')
    charts = []
    if "commitment" in e:
        charts.append(_commitment_chart(e["commitment"], n))
    if "probes" in e:
        charts.append(_probe_chart(e["probes"], n))
    if "spectral" in e:
        charts.append(_spectral_chart(e["spectral"], n))
    if "filmstrip" in e:
        charts.append(_scalar_chart(e["filmstrip"], n))
    if "guidance" in e:
        charts.append(_guidance_chart(e["guidance"], n))
    parts.append(f'<h3>Curves</h3><div class="charts">{"".join(charts)}</div>')
    if t.is_image and "filmstrip" in e:
        f = e["filmstrip"]
        steps = [int(s) for s in f.values["step"].tolist()]
        sigmas = _floats(f.values["sigma"])
        scaled = f.values["x"] / torch.tensor([math.sqrt(1 + s * s) for s in sigmas]).view(-1, 1, 1, 1)  # (S, C, H, W)
        parts.append(_strip(scaled, steps, sigmas, "x_t / sqrt(1 + sigma^2): the noisy state", scale=scale))
        parts.append(
            _strip(f.values["x0_hat"], steps, sigmas, "x0_hat: the model's guess of the final sample", scale=scale)
        )
        parts.append(
            _map_strip(f.values["change"], steps, sigmas, "Change of x0_hat since the previous step", scale=scale)
        )
    if "guidance" in e and t.is_image:
        g = e["guidance"]
        parts.append(
            _map_strip(
                g.values["map"],
                [int(s) for s in g.values["step"].tolist()],
                _floats(g.values["sigma"]),
                "Guidance map |D(x|c) - D(x|null)|",
                scale=scale,
            )
        )
    if "likelihood" in e and t.is_image:
        lk = e["likelihood"]
        final = grid_png_bytes(t.final[:1], nrow=1, scale=scale * 2, pad=0)
        surprise = torch.as_tensor(lk.values["surprise"]).clamp_min(0)
        figures = [
            f"<figure>{image_tag(final, alt='the final sample')}<figcaption>the sample</figcaption></figure>",
            f"<figure>{image_tag(heatmap_png_bytes(surprise, scale=scale * 2), alt='surprise')}"
            "<figcaption>surprise: bits per pixel</figcaption></figure>",
        ]
        if "pmi_map" in lk.values:
            pmi = torch.as_tensor(lk.values["pmi_map"]).clamp_min(0)
            figures.append(
                f"<figure>{image_tag(heatmap_png_bytes(pmi, scale=scale * 2), alt='information about the class')}"
                "<figcaption>information about the class: nats per pixel</figcaption></figure>"
            )
        curve = line_plot_svg(
            {"squared error": _floats(lk.values["error_curve"])},
            _floats(lk.values["gammas"]),
            width=420,
            height=200,
            title="At which noise level does the model know this image?",
            x_label="log-SNR (right: little noise)",
            y_label="denoising error",
        )
        parts.append(
            f"<h3>How likely is this sample?</h3><p>{html.escape(lk.summary)}</p>"
            f'<div class="strip">{"".join(figures)}{curve}</div>'
        )
    if "attribution" in e and t.is_image:
        a = e["attribution"]
        step = int(torch.as_tensor(a.values["step"]).reshape(-1)[0])
        amap = torch.as_tensor(a.values["map"]).abs()
        row = t.step_index.index(step) if step in t.step_index else 0
        x_then = grid_png_bytes(t.x0_hat[row, :1].float(), nrow=1, scale=scale * 2, pad=0)
        parts.append(
            f"<h3>Attribution at step {step}</h3><p>{html.escape(a.summary)}</p>"
            f'<div class="strip"><figure>{image_tag(x_then, alt="x0_hat at that step")}'
            f"<figcaption>x0_hat at step {step}</figcaption></figure>"
            f"<figure>{image_tag(heatmap_png_bytes(amap, scale=scale * 2), alt='attribution map')}"
            f"<figcaption>|attribution| w.r.t. x at step {step}</figcaption></figure></div>"
        )
    details = []
    for name, expl in e.items():
        info = {"summary": expl.summary, "params": expl.params, "diagnostics": expl.diagnostics}
        if name in run.seconds:
            info["seconds"] = run.seconds[name]
        details.append(
            f"<details><summary>{html.escape(name)}: parameters and diagnostics</summary>{_table(info)}</details>"
        )
    parts.append("<h3>Parameters and diagnostics</h3>" + "".join(details))
    return "\n".join(parts)


def write_explanation_report(
    runs: Sequence[ExplainedRun], path: str | Path, *, title: str = "diffsight explanation report", scale: int = 6
) -> ReportResult:
    """Write the HTML report to ``path`` and each run's Trace beside it as ``<stem>.<trace id>.trace.safetensors``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    traces = []
    sections = []
    for i, run in enumerate(runs):
        file = target.parent / f"{target.stem}.{run.trace.id}.trace.safetensors"
        save_trace(run.trace, file)
        traces.append(file)
        sections.append(_run_section(i, run, file.name, scale))
    contents = "".join(
        f'<li><a href="#run-{i}">seed {r.trace.meta.get("seed")}</a>: '
        f"{html.escape(r.narrative[0] if r.narrative else '')}</li>"
        for i, r in enumerate(runs)
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="note">diffsight {__version__}. Every number below comes from the Trace named in its section; the
narrative is computed from those numbers. Read it with <code>docs/reading-an-explanation-report.md</code>.</p>
<ul>{contents}</ul>
{"".join(sections)}
</body></html>
"""
    write_bytes_atomic(target, page.encode("utf-8"))
    return ReportResult(path=target, traces=traces)
