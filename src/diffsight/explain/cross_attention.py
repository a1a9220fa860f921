"""Per-step, per-layer, per-token cross-attention maps of a text-conditioned UNet, with fused attention kept.

DAAM (Tang et al. 2023, "What the DAAM: Interpreting Stable Diffusion Using Cross Attention", ACL, sec. 3)
defines a word's heat map as the cross-attention probabilities ``A = softmax(Q K^T / sqrt(d))`` of the latent
queries onto that word's tokens, upsampled to the latent grid and summed over all timesteps, layers and heads:
``D_w(x, y) = sum_t sum_{l, h} up(A^{t,l,h}_w)(x, y)``. It keeps only that sum. Here every hooked UNet call
keeps its own maps, so the time axis survives; the DAAM sum is one aggregation of them
(:meth:`AttentionMaps.all_steps_sum`).

How the maps are taken without giving up fused attention: :class:`CrossAttentionRecorder` wraps the processor of
each hooked cross-attention layer (the ``attn2`` of every transformer block). The wrapper first calls the
layer's own processor (diffusers' scaled-dot-product one by default), so the network's output is exactly what it
would be without recording. Only on hooked steps and layers it then recomputes the queries and keys and
``softmax(Q K^T * scale)`` for the recorded rows of the batch (the conditional half under guidance), averages
over heads and stores ``(B, tokens, h, w)`` on the CPU. Other calls cost nothing extra.

Identities the tests check: for every query the probabilities sum to 1 over *all* tokens (BOS and padding
included), so every stored map sums over tokens to 1 at each pixel (:meth:`AttentionMaps.mass`); and the sum
over steps of the per-step maps equals an independent all-steps accumulation (DAAM's own procedure).

Notation: B recorded rows, T tokens (the tokenizer's length), (h, w) the layer's grid, (H, W) the latent grid,
S sampler steps, E UNet evaluations (E = S for one-evaluation-per-step samplers).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from diffsight.errors import DiffsightError, ShapeError, unknown_name
from diffsight.sampling.records import StepRecord

__all__ = [
    "AttentionMaps",
    "AttentionRecord",
    "CrossAttentionRecorder",
    "cross_attention_layers",
    "word_maps",
]


def cross_attention_layers(unet: nn.Module) -> dict[str, nn.Module]:
    """The cross-attention modules of a diffusers UNet by name (``...transformer_blocks.N.attn2``), in order."""
    found = {
        name: module
        for name, module in unet.named_modules()
        if name.endswith("attn2") and hasattr(module, "set_processor") and hasattr(module, "to_k")
    }
    if not found:
        raise DiffsightError("this network has no cross-attention layers (attn2): is it a text-conditioned UNet?")
    return found


def _grid(n: int, height: int, width: int) -> tuple[int, int]:
    """(h, w) of a layer with ``n`` queries in a UNet whose input is ``height`` x ``width`` (stride-2 levels)."""
    h, w = height, width
    while h * w > n:
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    if h * w != n:
        raise ShapeError(f"{n} attention queries do not form a downsampled {height}x{width} grid")
    return h, w


@dataclass(frozen=True, eq=False)
class AttentionRecord:
    """The head-averaged cross-attention of one layer in one UNet evaluation.

    Attributes:
        evaluation: index of the UNet call in the run (0, 1, ...).
        step: the sampler step the call belongs to.
        timestep: the UNet's (possibly fractional) training timestep of the call.
        layer: the module name of the cross-attention layer.
        maps: (B, T, h, w) attention probabilities, float32 on the CPU; sums to 1 over T at each pixel.
    """

    evaluation: int
    step: int
    timestep: float
    layer: str
    maps: torch.Tensor


def word_maps(token_maps: torch.Tensor, spans: Sequence[Sequence[int]]) -> torch.Tensor:
    """Word maps (..., W, H, W') from token maps (..., T, H, W'): the mean over each word's sub-tokens (DAAM).

    A word with no tokens (truncated away) gets a map of zeros.
    """
    out = []
    for span in spans:
        if len(span):
            out.append(token_maps[..., list(span), :, :].mean(-3))
        else:
            out.append(torch.zeros_like(token_maps[..., 0, :, :]))
    return torch.stack(out, -3)


@dataclass(frozen=True, eq=False)
class AttentionMaps:
    """Everything one recorder saw: per-evaluation, per-layer maps and how to aggregate them.

    Aggregations upsample each layer's map bilinearly to the latent grid (linear, and it keeps a per-pixel
    distribution over tokens a distribution), then average over layers; DAAM averages the same way.
    """

    records: tuple[AttentionRecord, ...]
    latent_size: tuple[int, int]
    layers: tuple[str, ...]
    steps: tuple[int, ...] = field(default=())

    def _check(self) -> None:
        if not self.records:
            raise DiffsightError("no attention was recorded: was the recorder attached while the sampler ran?")

    def _layer_mean(self, records: Sequence[AttentionRecord], size: tuple[int, int]) -> torch.Tensor:
        ups = [F.interpolate(r.maps, size=size, mode="bilinear", align_corners=False) for r in records]
        return torch.stack(ups).mean(0)  # (B, T, H, W)

    def evaluation_maps(self, size: tuple[int, int] | None = None) -> torch.Tensor:
        """(E, B, T, H, W): each UNet evaluation's maps, averaged over the recorded layers."""
        self._check()
        size = size or self.latent_size
        by_eval: dict[int, list[AttentionRecord]] = {}
        for r in self.records:
            by_eval.setdefault(r.evaluation, []).append(r)
        return torch.stack([self._layer_mean(rs, size) for _, rs in sorted(by_eval.items())])

    def step_maps(self, size: tuple[int, int] | None = None) -> torch.Tensor:
        """(S, B, T, H, W): per sampler step, the mean over that step's evaluations of the layer-averaged maps.

        Steps are those in :attr:`steps` (the hooked steps that ran), in order.
        """
        self._check()
        size = size or self.latent_size
        out = []
        for step in self.steps:
            evals: dict[int, list[AttentionRecord]] = {}
            for r in self.records:
                if r.step == step:
                    evals.setdefault(r.evaluation, []).append(r)
            out.append(torch.stack([self._layer_mean(rs, size) for rs in evals.values()]).mean(0))
        return torch.stack(out)

    def all_steps_sum(self, size: tuple[int, int] | None = None) -> torch.Tensor:
        """(B, T, H, W): DAAM's map, the sum over every recorded UNet evaluation of the layer-averaged maps.

        With one evaluation per step (DDIM, Euler, DPM-Solver++) it equals ``step_maps().sum(0)``.
        """
        return self.evaluation_maps(size).sum(0)

    def layer_maps(self, layer: str) -> torch.Tensor:
        """(E, B, T, h, w): one layer's maps at its own resolution, one per recorded evaluation."""
        if layer not in self.layers:
            raise unknown_name("cross-attention layer", layer, list(self.layers))
        return torch.stack([r.maps for r in self.records if r.layer == layer])

    def mass(self) -> torch.Tensor:
        """(N,) for every record, the largest deviation from 1 of the per-pixel sum over tokens (0 when exact)."""
        self._check()
        return torch.stack([(r.maps.sum(1) - 1).abs().max() for r in self.records])


class _RecordingProcessor:
    """Wraps a layer's attention processor: the normal output first, then (when hooked) the probabilities."""

    def __init__(self, inner: Any, recorder: CrossAttentionRecorder, name: str) -> None:
        self.inner = inner
        self.recorder = recorder
        self.name = name

    def __call__(
        self,
        attn: nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        out = self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)
        if encoder_hidden_states is not None and self.recorder._wants(self.name):
            probs = _attention_probs(
                attn, hidden_states, encoder_hidden_states, attention_mask, temb, self.recorder.rows
            )
            self.recorder._store(self.name, probs.detach())  # a read-out: never part of the model's graph
        return out


def _attention_probs(
    attn: Any,
    hidden: torch.Tensor,
    context: torch.Tensor,
    mask: torch.Tensor | None,
    temb: torch.Tensor | None,
    rows: int | None,
) -> torch.Tensor:
    """Head-averaged ``softmax(Q K^T * scale)`` (B, N, T) of the first ``rows`` batch rows (all when None).

    Follows the layer's own input path (spatial and group norms, 4-D inputs, cross-attention norm, q/k norms,
    the additive mask) so that the probabilities are the ones its processor used.
    """
    batch = hidden.shape[0]
    keep = batch if rows is None else min(rows, batch)
    if getattr(attn, "spatial_norm", None) is not None:
        hidden = attn.spatial_norm(hidden, temb)
    if hidden.ndim == 4:
        b, c, h, w = hidden.shape
        hidden = hidden.reshape(b, c, h * w).transpose(1, 2)  # (B, N, C)
    hidden, context = hidden[:keep], context[:keep]
    if getattr(attn, "group_norm", None) is not None:
        hidden = attn.group_norm(hidden.transpose(1, 2)).transpose(1, 2)
    if getattr(attn, "norm_cross", None):
        context = attn.norm_encoder_hidden_states(context)
    q, k = attn.to_q(hidden), attn.to_k(context)  # (B, N, heads*d), (B, T, heads*d)
    heads = attn.heads
    d = k.shape[-1] // heads
    q = q.reshape(keep, -1, heads, d).transpose(1, 2)  # (B, heads, N, d)
    k = k.reshape(keep, -1, heads, d).transpose(1, 2)  # (B, heads, T, d)
    if getattr(attn, "norm_q", None) is not None:
        q = attn.norm_q(q)
    if getattr(attn, "norm_k", None) is not None:
        k = attn.norm_k(k)
    scores = (q.float() @ k.float().transpose(-1, -2)) * float(attn.scale)  # (B, heads, N, T)
    if mask is not None:
        full = attn.prepare_attention_mask(mask, k.shape[2], batch)  # (B*heads, 1 or N, T)
        scores = scores + full.reshape(batch, heads, -1, full.shape[-1])[:keep].float()
    return scores.softmax(-1).mean(1)  # (B, N, T)


class CrossAttentionRecorder:
    """Record the cross-attention maps of a UNet while a sampler runs.

    Usage::

        recorder = CrossAttentionRecorder(model.unet, rows=1)
        with recorder.attached():
            sampler(denoiser, x, sigmas, cond=emb, callback=recorder.on_step)
        maps = recorder.result()

    Args:
        unet: a diffusers ``UNet2DConditionModel`` (or any module with ``attn2`` attention layers).
        layers: names (or name prefixes, e.g. ``"up_blocks"``) of the layers to hook; None: every ``attn2``.
        steps: sampler step indices to record; None: every step. Other steps run with no extra work.
        rows: record only the first ``rows`` rows of each batch (the conditional half under guidance, which
            :class:`~diffsight.sampling.ClassifierFreeGuidance` puts first); None: every row.
        start: the sampler's first step index (its ``start=``), to number steps before the first callback.

    Pass :meth:`on_step` as (or call it from) the sampler's callback: it closes the step, so that the next UNet
    calls belong to the next step.
    """

    def __init__(
        self,
        unet: nn.Module,
        *,
        layers: Sequence[str] | None = None,
        steps: Sequence[int] | None = None,
        rows: int | None = None,
        start: int = 0,
    ) -> None:
        available = cross_attention_layers(unet)
        if layers is None:
            chosen = list(available)
        else:
            chosen = []
            for pattern in layers:
                hits = [n for n in available if n == pattern or n.startswith(pattern)]
                if not hits:
                    raise unknown_name("cross-attention layer", pattern, list(available))
                chosen += [n for n in hits if n not in chosen]
        if rows is not None and rows < 1:
            raise DiffsightError(f"rows must be a positive number of batch rows or None, got {rows}")
        self.unet = unet
        self.modules = {n: available[n] for n in chosen}
        self.steps = None if steps is None else frozenset(int(s) for s in steps)
        self.rows = rows
        self.step = int(start)
        self._records: list[AttentionRecord] = []
        self._seen_steps: list[int] = []
        self._evaluation = -1
        self._timestep = float("nan")
        self._latent: tuple[int, int] | None = None

    # --- the hooks ------------------------------------------------------------------------------------------

    def _pre_forward(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        sample = args[0] if args else kwargs["sample"]
        t = args[1] if len(args) > 1 else kwargs.get("timestep")
        self._evaluation += 1
        self._latent = (int(sample.shape[-2]), int(sample.shape[-1]))
        t = torch.as_tensor(t).reshape(-1)
        self._timestep = float(t[0]) if t.numel() else float("nan")

    def _wants(self, name: str) -> bool:
        return self._latent is not None and (self.steps is None or self.step in self.steps)

    def _store(self, name: str, probs: torch.Tensor) -> None:
        assert self._latent is not None
        h, w = _grid(probs.shape[1], *self._latent)
        maps = probs.transpose(1, 2).reshape(probs.shape[0], probs.shape[2], h, w)  # (B, T, h, w)
        self._records.append(AttentionRecord(self._evaluation, self.step, self._timestep, name, maps.cpu()))
        if not self._seen_steps or self._seen_steps[-1] != self.step:
            self._seen_steps.append(self.step)

    def on_step(self, record: StepRecord) -> None:
        """Sampler callback: the step ``record.index`` is done; later UNet calls belong to the next one."""
        self.step = record.index + 1

    @contextmanager
    def attached(self) -> Iterator[CrossAttentionRecorder]:
        """Install the recording processors (and a pre-forward hook on the UNet); restore them on exit."""
        originals = {name: module.processor for name, module in self.modules.items()}
        handle = self.unet.register_forward_pre_hook(self._pre_forward, with_kwargs=True)
        try:
            for name, module in self.modules.items():
                module.set_processor(_RecordingProcessor(originals[name], self, name))
            yield self
        finally:
            handle.remove()
            for name, module in self.modules.items():
                module.set_processor(originals[name])

    def result(self) -> AttentionMaps:
        """The maps recorded so far."""
        if self._latent is None:
            raise DiffsightError("the recorder saw no UNet call: run the sampler inside `with recorder.attached():`")
        return AttentionMaps(tuple(self._records), self._latent, tuple(self.modules), tuple(self._seen_steps))
