"""What ``diffsight audit`` does: sample the model, run the audits, write one offline HTML page and a JSON summary.

Sections: memorization (calibrated on the empirical oracle and a Gaussian fit of the training data, nearest
training images shown), membership inference (members against the items the model's config held out, when it
holds some out) and bias (factor shares against the training distribution and a uniform target, when the data has
factor probes). The JSON holds the numbers a pipeline gates on.
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
from diffsight.data.image_io import grid_png_bytes, png_data_uri
from diffsight.data.registry import load_data
from diffsight.errors import DiffsightError
from diffsight.explain.explanation import jsonable
from diffsight.explain.factors import reader_for_model
from diffsight.metrics.model_eval import heldout_data_of, training_data_of
from diffsight.models.folder import LoadedModel
from diffsight.sampling.generate import generate_samples
from diffsight.trace.html import line_plot_svg

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
    progress: Callable[[str], None] | None = None,
) -> AuditReport:
    """Sample ``n`` items of ``model`` and audit them against ``data`` (default: the model's training data)."""
    say = progress or (lambda _line: None)
    if n < 10:
        raise DiffsightError(f"--n must be at least 10 samples, got {n}")
    train = load_data(data) if data is not None else training_data_of(model)
    if tuple(train.samples.shape[1:]) != tuple(model.event_shape):
        raise DiffsightError(
            f"{data} holds items of shape {tuple(train.samples.shape[1:])}; {model.name} makes {model.event_shape}"
        )
    start = time.perf_counter()
    labels = torch.arange(n) % model.num_classes if model.num_classes > 0 else None
    say(f"sampling {n} items of {model.name} ({sampler}, {steps} steps)")
    with torch.no_grad():
        samples = generate_samples(
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
            )
        summary["bias"] = jsonable(bias.to_json())
        items = "".join(f"<li>{html.escape(line.strip())}</li>" for line in bias.summary().splitlines()[1:])
        skewed = ", ".join(bias.skewed) or "none"
        sections.append(
            f"<h2>Bias</h2><p>{n} samples against the {html.escape(str(target))} distribution: skewed factors: "
            f"{html.escape(skewed)} (chi-square p < 0.01 and TV > 0.05; 95% bootstrap intervals).</p><ul>{items}</ul>"
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
