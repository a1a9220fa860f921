"""What the API sends: images as PNG data URIs, per-step stream events, trace frames and explanation views.

Images are drawn at an integer scale that makes the longer side about 64 pixels (an 8x8 digit becomes 64x64
with nearest-neighbour pixels), so a client can show them as they are and :func:`diffsight.serve.images`
can read them back exactly. Heat maps go from black (0) to yellow-white (the largest value of the series, so
one slider position compares with the next; for change maps the largest after the first step, which
saturates). A noisy state ``x`` at noise level sigma is shown divided by ``sqrt(1 + sigma^2)``, which keeps
the pure-noise start inside the displayable range.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from diffsight.data.image_io import grid_png_bytes, heatmap_png_bytes, png_data_uri
from diffsight.errors import DiffsightError
from diffsight.explain.explanation import Explanation, jsonable
from diffsight.sampling.records import StepRecord
from diffsight.trace.record import Trace

__all__ = [
    "change_maps",
    "change_scale",
    "display_scale",
    "explain_view",
    "heatmap_uri",
    "image_uri",
    "step_payload",
    "trace_frames",
]

TARGET_SIDE = 64


def display_scale(height: int, width: int) -> int:
    """The integer upscale that brings the longer side near :data:`TARGET_SIDE` pixels (1..8)."""
    return max(1, min(8, TARGET_SIDE // max(1, height, width)))


def _displayable(image: torch.Tensor) -> torch.Tensor:
    """(C, H, W) -> (1, 1 or 3, H, W) float32 in [-1, 1] (other channel counts are averaged to grey)."""
    x = image.detach().float().cpu()
    if x.shape[0] not in (1, 3):
        x = x.mean(0, keepdim=True)  # (1, H, W)
    return x[None]


def image_uri(image: torch.Tensor) -> str:
    """A (C, H, W) image in [-1, 1] as a PNG data URI."""
    if image.ndim != 3:
        raise DiffsightError(f"only image samples (C, H, W) can be drawn, got shape {tuple(image.shape)}")
    scale = display_scale(image.shape[-2], image.shape[-1])
    return png_data_uri(grid_png_bytes(_displayable(image), nrow=1, scale=scale, pad=0))


def heatmap_uri(values: torch.Tensor, vmax: float | None = None) -> str:
    """A non-negative (H, W) map as a heat-map PNG data URI (black 0 to yellow-white ``vmax``)."""
    v = values.detach().float().cpu().nan_to_num(0.0).clamp_min(0)
    scale = display_scale(v.shape[-2], v.shape[-1])
    return png_data_uri(heatmap_png_bytes(v, scale=scale, vmax=vmax))


def _rms(t: torch.Tensor) -> float:
    return float(t.detach().float().pow(2).mean().sqrt())


def step_payload(record: StepRecord, previous_x0: torch.Tensor | None, num_steps: int, nfe: int) -> dict[str, Any]:
    """The ``step`` event of the stream for sample 0: its x0_hat preview and scalars.

    ``x0_change`` is the RMS of x0_hat minus the previous step's x0_hat (zeros before the first step), ``x_rms``
    the RMS of the state entering the step, ``nfe`` the network evaluations of the run so far.
    """
    x0 = record.x0_hat[0].detach().float().cpu()  # event
    before = torch.zeros_like(x0) if previous_x0 is None else previous_x0
    return {
        "index": int(record.index),
        "num_steps": int(num_steps),
        "sigma": float(record.sigma),
        "sigma_next": float(record.sigma_next),
        "nfe": int(nfe),
        "preview": image_uri(x0) if x0.ndim == 3 else None,
        "scalars": {"x0_change": _rms(x0 - before), "x_rms": _rms(record.x[0])},
    }


def change_maps(x0_hat: torch.Tensor) -> torch.Tensor:
    """(S, C, H, W) -> (S, H, W): the channel norm of x0_hat_s - x0_hat_{s-1}, the first step against zeros."""
    delta = torch.diff(x0_hat.float(), dim=0, prepend=torch.zeros_like(x0_hat[:1]).float())  # (S, C, H, W)
    return delta.pow(2).sum(1).sqrt()


def change_scale(change: torch.Tensor) -> float:
    """The colour scale of a run's change maps: their largest value after the first step (the first step's
    change, from zeros to a whole first guess, would otherwise make every later map black; it saturates)."""
    rest = change[1:] if change.shape[0] > 1 else change
    return float(rest.max()) if rest.numel() else 0.0


def trace_frames(trace: Trace, sample: int) -> dict[str, Any]:
    """GET /v1/traces/{id}/frames: per recorded step the noisy state, x0_hat and the change map of one sample."""
    if not trace.is_image:
        raise DiffsightError(f"trace {trace.id} holds vectors of shape {trace.event_shape}, not images: no frames")
    if not 0 <= sample < trace.batch_size:
        raise DiffsightError(f"sample must lie in 0..{trace.batch_size - 1} for trace {trace.id}, got {sample}")
    x = trace.x[:, sample].float()  # (S, C, H, W)
    x0 = trace.x0_hat[:, sample].float()  # (S, C, H, W)
    sigma = trace.tensors["sigma"].tolist()
    sigma_next = trace.tensors["sigma_next"].tolist()
    change = change_maps(x0)  # (S, H, W)
    top = change_scale(change)
    labels = trace.meta.get("labels")
    steps = [
        {
            "index": int(index),
            "sigma": float(sigma[r]),
            "sigma_next": float(sigma_next[r]),
            "x": image_uri(x[r] / math.sqrt(1.0 + float(sigma[r]) ** 2)),
            "x0_hat": image_uri(x0[r]),
            "change": heatmap_uri(change[r], vmax=top),
            "change_rms": float(change[r].pow(2).mean().sqrt()),
        }
        for r, index in enumerate(trace.step_index)
    ]
    return {
        "trace_id": trace.id,
        "model": (trace.meta.get("model") or {}).get("name"),
        "num_steps": trace.num_steps,
        "label": None if labels is None else int(labels[sample]),
        "sample": sample,
        "n": trace.batch_size,
        "sampler": trace.meta.get("sampler"),
        "seed": trace.meta.get("seed"),
        "guidance": trace.meta.get("guidance"),
        "event_shape": list(trace.event_shape),
        "change_max": top,
        "steps": steps,
        "final": image_uri(trace.final[sample]),
    }


# --- explanations -------------------------------------------------------------------------------------------


def _floats(t: Any) -> list[float | None]:
    return jsonable(torch.as_tensor(t).detach().float().reshape(-1))


def _steps(values: dict[str, Any]) -> list[int]:
    return [int(s) for s in torch.as_tensor(values["step"]).reshape(-1).tolist()]


def _curves(found: dict[str, Explanation]) -> dict[str, dict[str, Any]]:
    curves: dict[str, dict[str, Any]] = {}
    if "filmstrip" in found:
        v = found["filmstrip"].values
        curves["filmstrip"] = {
            "x": _steps(v),
            "x_label": "step",
            "y_label": "RMS (data units)",
            "series": {"x0_hat change": _floats(v["x0_change"]), "distance to final": _floats(v["distance_to_final"])},
        }
    if "commitment" in found:
        v = found["commitment"].values
        series: dict[str, list[float | None]] = {}
        for factor, agreement in v["agreement"].items():
            series[f"{factor} agreement"] = _floats(agreement)
            if factor in v.get("ci_low", {}) and factor in v.get("ci_high", {}):
                series[f"{factor} 95% low"] = _floats(v["ci_low"][factor])
                series[f"{factor} 95% high"] = _floats(v["ci_high"][factor])
        curves["commitment"] = {
            "x": _steps(v),
            "x_label": "step branched from",
            "y_label": "share of continuations ending on the final value",
            "series": series,
        }
    if "probes" in found:
        v = found["probes"].values
        series = {}
        for factor, probs in v["probabilities"].items():
            p = torch.as_tensor(probs).float()  # (S, V)
            names = [str(n) for n in (v.get("value_names", {}).get(factor) or range(p.shape[-1]))]
            final = v["final_value"][factor]  # a value name, or its index
            value = names.index(str(final)) if str(final) in names else int(final)
            series[f"P({factor} = {names[value]})"] = _floats(p[:, value])
        curves["probes"] = {
            "x": _steps(v),
            "x_label": "step",
            "y_label": "probe probability on x0_hat",
            "series": series,
        }
    if "spectral" in found:
        v = found["spectral"].values
        power = torch.as_tensor(v["band_power"]).float()  # (S, bands)
        curves["spectral"] = {
            "x": _steps(v),
            "x_label": "step",
            "y_label": "band power of x0_hat / final",
            "series": {f"band {b + 1}": _floats(power[:, b]) for b in range(power.shape[-1])},
        }
    if "guidance" in found:
        v = found["guidance"].values
        curves["guidance"] = {
            "x": _steps(v),
            "x_label": "step",
            "y_label": "share of the condition's effect",
            "series": {"share": _floats(v["share"])},
        }
    if "likelihood" in found:
        v = found["likelihood"].values
        curves["likelihood"] = {
            "x": _floats(torch.as_tensor(v["gammas"]).reshape(-1)),
            "x_label": "log-SNR (high = little noise)",
            "y_label": "denoising error",
            "series": {"denoising error": _floats(v["error_curve"])},
        }
    return curves


def _map_view(steps: list[int], maps: torch.Tensor, top: float | None = None) -> dict[str, Any]:
    m = maps.detach().float().abs()  # (S, H, W)
    if top is None:
        top = float(m.max()) if m.numel() else 0.0
    return {"steps": steps, "images": [heatmap_uri(m[i], vmax=top) for i in range(m.shape[0])], "max": top}


def _maps(found: dict[str, Explanation], trace: Trace, sample: int) -> dict[str, dict[str, Any]]:
    if not trace.is_image:
        return {}
    maps: dict[str, dict[str, Any]] = {}
    if "filmstrip" in found:
        v = found["filmstrip"].values
        change = change_maps(trace.x0_hat[:, sample])  # (S, H, W)
        maps["change"] = _map_view(_steps(v), change, change_scale(change))
    if "guidance" in found:
        v = found["guidance"].values
        maps["guidance"] = _map_view(_steps(v), torch.as_tensor(v["map"]))
    if "attribution" in found:
        v = found["attribution"].values
        maps["attribution"] = _map_view(_steps(v)[:1], torch.as_tensor(v["map"])[None])
    if "likelihood" in found:
        v = found["likelihood"].values
        last = [trace.step_index[-1]]
        maps["surprise"] = _map_view(last, torch.as_tensor(v["surprise"]).clamp_min(0)[None])
        if v.get("pmi_map") is not None:
            maps["information"] = _map_view(last, torch.as_tensor(v["pmi_map"]).clamp_min(0)[None])
    return maps


def explain_view(
    trace: Trace, found: dict[str, Explanation], narrative: list[str], sample: int, seconds: float
) -> dict[str, Any]:
    """POST /v1/explain's answer: narrative, summaries, curves, maps and each Explanation without its values."""
    return {
        "trace_id": trace.id,
        "sample": sample,
        "narrative": list(narrative),
        "summaries": {name: e.summary for name, e in found.items()},
        "curves": _curves(found),
        "maps": _maps(found, trace, sample),
        "explanations": {name: e.to_json(include_values=False) for name, e in found.items()},
        "seconds": round(seconds, 3),
    }
