"""Traces of latent models: the latents as sampled, and the decoded estimates that explainers read.

A Trace of a :class:`~diffsight.models.latent.LatentModel` keeps the usual tensors in latent space (``x``,
``x0_hat``, ``final``, noise: what the sampler saw, so ``replay`` and branching work unchanged) and two more,
written by :func:`decoded_tensors` when the run is recorded:

- ``decoded.x0_hat`` (S, B, C, H, W)  the decoder's image of each recorded step's x0_hat (``D(x0_hat)``);
- ``decoded.final``  (B, C, H, W)     the decoded sample, float32.

``meta["latent"]`` names the image shape and the scaling of the latents. :func:`decoded_view` turns such a Trace
into an image-space Trace (``x0_hat`` and ``final`` the decoded ones), on which the trace-only explainers
(filmstrip, spectrum, probes) run unchanged. The view's ``x`` is the decoder's reading of the noisy latent state
when the model is passed (for display only: the decoder was never trained on noisy latents), else the decoded
x0_hat. The view keeps its source's hash, so explanations computed on it name the recorded trace; save the
source, not the view.
"""

from __future__ import annotations

from typing import Any

import torch

from diffsight.errors import DiffsightError
from diffsight.models.folder import LoadedModel
from diffsight.models.latent import LatentModel
from diffsight.trace.record import Trace

__all__ = ["decoded_tensors", "decoded_view", "is_latent_trace", "latent_meta"]


def is_latent_trace(trace: Trace) -> bool:
    """True when ``trace`` was recorded with a latent model (it holds decoded estimates)."""
    return "decoded.x0_hat" in trace.tensors and "decoded.final" in trace.tensors


def latent_meta(model: LoadedModel) -> dict[str, Any]:
    """What a Trace records about a latent model's decoder (``meta["latent"]``)."""
    if not isinstance(model, LatentModel):
        raise DiffsightError(f"{model.name} is not a latent model")
    return {
        "image_shape": list(model.image_shape),
        "latent_shape": list(model.event_shape),
        "scaling_factor": float(model.scaling_factor),
        "shift_factor": float(model.shift_factor),
    }


def decoded_tensors(
    model: LoadedModel, x0_hat: torch.Tensor, final: torch.Tensor, *, dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    """``decoded.x0_hat`` (S, B, *image) in ``dtype`` and ``decoded.final`` (B, *image) float32 of a latent run."""
    if not isinstance(model, LatentModel):
        raise DiffsightError(f"{model.name} is not a latent model: its trace needs no decoding")
    s, b = x0_hat.shape[:2]
    flat = x0_hat.reshape(s * b, *x0_hat.shape[2:]).float()  # (S*B, c, h, w)
    images = model.decode_batched(flat)  # (S*B, C, H, W)
    return {
        "decoded.x0_hat": images.reshape(s, b, *images.shape[1:]).to(dtype),  # (S, B, C, H, W)
        "decoded.final": model.decode_batched(final.float()),
    }


def decoded_view(trace: Trace, model: LoadedModel | None = None) -> Trace:
    """The image-space Trace of a latent trace (see the module docstring)."""
    if not is_latent_trace(trace):
        raise DiffsightError(
            f"trace {trace.id} holds no decoded estimates: it was not recorded with a latent model (record it again "
            "with the LatentModel that load_model returns for a folder with vae/)"
        )
    x0 = trace.tensors["decoded.x0_hat"]
    if isinstance(model, LatentModel):
        s, b = trace.x.shape[:2]
        states = model.decode_batched(trace.x.reshape(s * b, *trace.x.shape[2:]).float())
        x = states.reshape(s, b, *states.shape[1:]).to(x0.dtype)  # (S, B, C, H, W)
    else:
        x = x0.clone()
    tensors = {
        name: t
        for name, t in trace.tensors.items()
        if name in ("step_index", "sigma", "sigma_next")  # the noise draws are latents: left out
    }
    tensors.update({"x": x, "x0_hat": x0, "final": trace.tensors["decoded.final"], "x_init": x[0].float()})
    meta = {**trace.meta, "view": "decoded", "decoded_from": trace.id}
    return Trace(meta=meta, tensors=tensors)
