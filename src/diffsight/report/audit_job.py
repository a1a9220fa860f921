"""What ``diffsight audit`` does: sample the model, run the audits, write one offline HTML page and a JSON summary.

Sections: memorization (calibrated on the empirical oracle and a Gaussian fit of the training data, nearest
training images shown), training-data attribution (TRAK for the samples closest to a training image and one
Trace step by step), membership inference (members against the items the model's config held out, when it
holds some out) and bias (factor shares against the training distribution and a uniform target, when the data has
factor probes, and the step at which a skewed factor is decided). The JSON holds the numbers a pipeline gates on.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from diffsight._version import __version__
from diffsight.atomic import write_bytes_atomic
from diffsight.audit.bias import bias_audit
from diffsight.audit.membership import membership_inference
from diffsight.audit.memorization import MemorizationAudit
from diffsight.audit.sample_attribution import SampleAttribution, attribute_samples
from diffsight.data.image_io import grid_png_bytes, png_data_uri
from diffsight.data.registry import load_data
from diffsight.errors import DiffsightError
from diffsight.explain.explanation import jsonable
from diffsight.explain.factors import reader_for_model
from diffsight.metrics.model_eval import heldout_data_of, training_data_of
from diffsight.models.folder import LoadedModel
from diffsight.trace.html import line_plot_svg, pick_rows
from diffsight.training.distributed import generate_split

__all__ = ["AuditReport", "run_audit", "write_audit_report"]


@dataclass(frozen=True, eq=False)
class AuditReport:
    """The JSON summary and the HTML sections of one audit."""

    summary: dict[str, Any]
    sections: list[str] = field(default_factory=list)


def _img(images: torch.Tensor, alt: str, scale: int) -> str:
    png = grid_png_bytes(images, nrow=len(images), scale=scale, pad=1)
    return f'<img src="{png_data_uri(png)}" alt="{html.escape(alt)}" style="image-rendering:pixelated">'


def run_audit(
    model: LoadedModel,
    *,
    data: str | None = None,
    n: int = 1000,
    steps: int = 20,
    sampler: str = "dpmpp_2m",
    seed: int = 0,
    controls: int = 200,
    target: str = "training",
    attribute: int = 4,
    locate: bool = True,
    progress: Callable[[str], None] | None = None,
) -> AuditReport:
    """Sample ``n`` items of ``model`` and audit them against ``data`` (default: the model's training data).

    ``attribute``: how many samples (those closest to a training image) get TRAK training-data attribution, plus
    one Trace attributed step by step; 0 skips the section (it costs minutes: see BENCHMARKS.md). ``locate``: find
    the step at which each skewed factor is decided (branching on a few traces).
    """
    say = progress or (lambda _line: None)
    if n < 10:
        raise DiffsightError(f"--n must be at least 10 samples, got {n}")
    if not 0 <= attribute <= n:
        raise DiffsightError(f"--attribute must lie in 0..{n} (the number of samples), got {attribute}")
    train = load_data(data) if data is not None else training_data_of(model)
    if tuple(train.samples.shape[1:]) != tuple(model.event_shape):
        raise DiffsightError(
            f"{data} holds items of shape {tuple(train.samples.shape[1:])}; {model.name} makes {model.event_shape}"
        )
    start = time.perf_counter()
    labels = torch.arange(n) % model.num_classes if model.num_classes > 0 else None
    say(f"sampling {n} items of {model.name} ({sampler}, {steps} steps)")
    with torch.no_grad():  # shared between processes under torchrun / accelerate launch, gathered on each
        samples = generate_split(
            model.denoiser,
            model.event_shape,
            n,
            steps=steps,
            sampler=sampler,
            generator=torch.Generator().manual_seed(seed),
            labels=labels,
            null_class=model.null_class,
        )
    sampling_s = time.perf_counter() - start
    reader = reader_for_model(model)
    features = None if reader is None else reader.classifier.features
    summary: dict[str, Any] = {
        "model": model.name,
        "weights_sha256": model.weights_sha256(),
        "data": train.name,
        "data_fingerprint": train.fingerprint(),
        "n_samples": n,
        "sampler": sampler,
        "steps": steps,
        "seed": seed,
        "diffsight_version": __version__,
    }
    sections: list[str] = []
    scale = max(2, 48 // model.event_shape[-1]) if len(model.event_shape) == 3 else 1

    # -- memorization ------------------------------------------------------------------------------------------
    say(f"memorization: calibrating on the empirical oracle and a Gaussian fit ({controls} samples each)")
    t0 = time.perf_counter()
    with torch.no_grad():
        audit = MemorizationAudit(train.samples, features=features)
        calibration = audit.calibrate_with_oracles(controls, generator=torch.Generator().manual_seed(seed + 1))
        result = audit.audit(samples)
    memo_s = time.perf_counter() - t0
    summary["memorization"] = {**jsonable(result.to_json()), "calibration": jsonable(calibration), "seconds": memo_s}
    ratio = result.tests["pixels"].ratio  # (n,) smaller = closer to a training image than to its neighbours
    closest = ratio.argsort()[:8].tolist()
    rows = []
    if len(model.event_shape) == 3:
        for i in closest:
            nearest = train.samples[result.tests["pixels"].nearest[i, :4]]
            rows.append(
                f"<tr><td>{_img(samples[i : i + 1], 'sample', scale)}</td><td>{_img(nearest, 'nearest', scale)}</td>"
                f"<td>{float(ratio[i]):.3f}</td><td>{html.escape(str(result.verdicts[i]))}</td></tr>"
            )
    sections.append(
        f"<h2>Memorization</h2><p>{html.escape(result.summary())}</p><p>Thresholds calibrated on the empirical "
        "oracle of the training data (which copies by construction) and a Gaussian fit (which cannot copy): "
        + html.escape(json.dumps(jsonable({k: v for k, v in calibration.items() if k != "tests"}))[:600])
        + "</p><h3>The 8 samples closest to a training image (pixel ratio test)</h3>"
        "<table><tr><th>sample</th><th>nearest training images</th><th>ratio</th><th>verdict</th></tr>"
        + "".join(rows)
        + "</table>"
    )

    # -- training-data attribution ---------------------------------------------------------------------------
    if attribute > 0 and model.num_classes > 0 and train.labels is None:
        summary["attribution"] = {"skipped": "the data has no labels for this class-conditional model"}
        sections.append("<h2>Training-data attribution</h2><p>Skipped: the data has no labels.</p>")
    elif attribute > 0:
        t0 = time.perf_counter()
        found = attribute_samples(
            model,
            train,
            samples,
            ratio.argsort()[:attribute].tolist(),  # the samples closest to a training image
            labels=labels,
            trace_seed=seed + 4,
            steps=steps,
            sampler=sampler,
            seed=seed + 5,
            progress=say,
        )
        summary["attribution"] = {**jsonable(found.to_json()), "seconds": round(time.perf_counter() - t0, 2)}
        sections.append(_attribution_section(found, samples, train.samples, scale))
    else:
        summary["attribution"] = {"skipped": "--attribute 0"}

    # -- membership ---------------------------------------------------------------------------------------------
    try:
        held = heldout_data_of(model) if data is None else None
    except DiffsightError as err:
        held = None
        summary["membership"] = {"skipped": str(err)}
        sections.append(f"<h2>Membership inference</h2><p>Skipped: {html.escape(str(err))}</p>")
    if held is not None:
        say(f"membership inference: {len(held)} training items against {len(held)} held-out items")
        pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed + 2))[: len(held)]
        members = train.subset(pick)
        cond_m = members.labels if model.num_classes > 0 else None
        cond_h = held.labels if model.num_classes > 0 else None
        with torch.no_grad():
            mi = membership_inference(
                model.denoiser,
                members.samples,
                held.samples,
                cond_members=cond_m,
                cond_nonmembers=cond_h,
                generator=torch.Generator().manual_seed(seed + 3),
            )
        summary["membership"] = jsonable(mi.to_json())
        chart = line_plot_svg(
            {"AUC": list(mi.aucs), "chance": [0.5] * len(mi.aucs)},
            [float(torch.tensor(s).log10()) for s in mi.sigmas],
            title="Membership inference AUC per noise level",
            x_label="log10 sigma",
            y_label="AUC",
            y_range=(0.4, 1.0),
            width=460,
            height=220,
        )
        sections.append(f"<h2>Membership inference</h2><p>{html.escape(mi.summary())}</p>{chart}")
    elif "membership" not in summary:
        summary["membership"] = {"skipped": "an external --data set has no held-out split"}

    # -- bias -----------------------------------------------------------------------------------------------------
    if reader is not None:
        say(f"bias: factor shares against the {target} distribution")
        with torch.no_grad():
            bias = bias_audit(
                model,
                n=n,
                steps=steps,
                sampler=sampler,
                seed=seed,
                target=target,
                reader=reader,
                data=train,
                samples=samples if model.num_classes == 0 else None,  # conditional: p(x) through the null class
                locate=locate,
            )
        summary["bias"] = jsonable(bias.to_json())
        items = "".join(f"<li>{html.escape(line.strip())}</li>" for line in bias.summary().splitlines()[1:])
        skewed = ", ".join(bias.skewed) or "none"
        where = "".join(
            f"<li>{html.escape(f)}: {html.escape(repr(r.decided['value']))} is decided at median step "
            f"{r.decided['median_step']} of {r.decided['num_steps']} (per trace: {r.decided['steps']}; branching "
            "with fresh noise, -1 = never decided)</li>"
            for f, r in bias.factors.items()
            if r.decided is not None
        )
        sections.append(
            f"<h2>Bias</h2><p>{n} samples against the {html.escape(str(target))} distribution: skewed factors: "
            f"{html.escape(skewed)} (chi-square p < 0.01 and TV > 0.05; 95% bootstrap intervals).</p><ul>{items}</ul>"
            + (f"<h3>Where the skew is decided</h3><ul>{where}</ul>" if where else "")
        )
    else:
        summary["bias"] = {"skipped": "no factor probes for this data (a shipped classifier reads digits and shapes)"}
        sections.append("<h2>Bias</h2><p>Skipped: no factor probes for this data.</p>")
    summary["cost"] = {"sampling_s": round(sampling_s, 2), "total_s": round(time.perf_counter() - start, 2)}
    summary["gate"] = {
        "share_flagged_as_copies": result.share_flagged,
        "membership_best_auc": (summary.get("membership") or {}).get("best_auc"),
        "skewed_factors": (summary.get("bias") or {}).get("skewed", []),
    }
    return AuditReport(summary=summary, sections=sections)


def _attribution_section(found: SampleAttribution, samples: torch.Tensor, train: torch.Tensor, scale: int) -> str:
    """Each attributed sample beside its top training images (TRAK) and its nearest one in pixels; the Trace's
    per-step top images and the rank curve of the image that wins at the end."""
    images = samples.ndim == 4
    rows = []
    for row, i in enumerate(found.indices):
        tops = ", ".join(f"#{int(t)} ({float(v):.3g})" for t, v in zip(found.top[row], found.scores[row], strict=True))
        pics = (
            f"<td>{_img(samples[i : i + 1], 'sample', scale)}</td><td>{_img(train[found.top[row]], 'top', scale)}</td>"
            f"<td>{_img(train[found.pixel_nearest[row] : found.pixel_nearest[row] + 1], 'nearest', scale)}</td>"
            if images
            else ""
        )
        rows.append(f"<tr><td>{i}</td>{pics}<td>{html.escape(tops)}</td><td>#{int(found.pixel_nearest[row])}</td></tr>")
    head = (
        "<th>sample</th><th>image</th><th>top training images (TRAK)</th><th>nearest in pixels</th>"
        if images
        else ("<th>sample</th>")
    )
    body = (
        f"<h2>Training-data attribution</h2><p>{html.escape(found.summary())}</p><p>Settings: "
        + html.escape(json.dumps(jsonable(found.params)))
        + f" ({found.seconds:.0f} s). Scores estimate how much training on an image lowered the sample's denoising "
        "loss; they rank, they do not prove copying (the memorization section tests that).</p>"
        f"<table><tr>{head}<th>scores</th><th>pixel nearest</th></tr>{''.join(rows)}</table>"
    )
    step = found.per_step
    if step is not None:
        picks = pick_rows(len(step["steps"]), 8)
        cells = "".join(
            f"<tr><td>{step['steps'][s]}</td><td>{step['sigmas'][s]:.3g}</td>"
            + (
                f"<td>{_img(step['x0_hat'][s : s + 1], 'x0_hat', scale)}</td>"
                f"<td>{_img(train[step['top'][s, :3]], 'top', scale)}</td>"
                if images
                else ""
            )
            + f"<td>{', '.join('#' + str(int(t)) for t in step['top'][s, :3])}</td>"
            f"<td>{step['final_top_ranks'][s]}</td></tr>"
            for s in picks
        )
        chart = line_plot_svg(
            {f"rank of #{step['final_top']}": [float(r) for r in step["final_top_ranks"]]},
            [float(s) for s in step["steps"]],
            title=f"Rank of the final top training image along trace {step['trace_id']}",
            x_label="sampler step",
            y_label="rank (1 = first)",
            width=460,
            height=200,
        )
        head2 = "<th>x0_hat</th><th>top 3</th>" if images else ""
        body += (
            f"<h3>Step by step along trace {html.escape(step['trace_id'])}</h3><p>Journey-TRAK: the denoiser's "
            "estimate x0_hat at each recorded step, scored at that step's noise level.</p>"
            f"<table><tr><th>step</th><th>sigma</th>{head2}<th>top 3</th><th>rank of #{step['final_top']}</th></tr>"
            f"{cells}</table>{chart}"
        )
    return body


def write_audit_report(report: AuditReport, path: str | Path) -> Path:
    """One offline HTML page (inline images and SVG, no script, a strict content-security policy)."""
    s = report.summary
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>diffsight audit: {html.escape(s["model"])}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:24px auto;padding:0 16px;color:#222}}
table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ddd;padding:4px 8px;text-align:left}}
h2{{border-bottom:1px solid #ddd;margin-top:32px}}</style></head><body>
<h1>Audit of {html.escape(s["model"])}</h1>
<p>diffsight {html.escape(s["diffsight_version"])}: {s["n_samples"]} samples ({html.escape(s["sampler"])},
{s["steps"]} steps, seed {s["seed"]}) against {html.escape(str(s["data"]))} (fingerprint
{html.escape(s["data_fingerprint"][:16])}...); weights sha256 {html.escape(s["weights_sha256"][:16])}...;
{s["cost"]["total_s"]:.0f} s in all.</p>
<h2>Gate</h2><pre>{html.escape(json.dumps(s["gate"], indent=2))}</pre>
{"".join(report.sections)}
</body></html>
"""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(target, page.encode("utf-8"))
    return target
