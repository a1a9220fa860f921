"""An MLP backbone for vector data (toy 2-D sets, table rows): ``F(x_in, c_noise, cond)``.

The noise level enters through random Fourier features of c_noise (Tancik et al. 2020; as in NCSN++'s
Gaussian Fourier projection, Song et al. 2021), mapped by a small MLP and added to every hidden layer.
Class labels, when configured, add a learned embedding with one extra null row for guidance.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from diffsight.errors import DiffsightError
from diffsight.models.labels import class_labels

__all__ = ["SigmaMLP", "residual_blocks", "run_residual_blocks"]


def residual_blocks(hidden: int, emb_dim: int, depth: int, dropout: float = 0.0) -> nn.ModuleList:
    """``depth`` pre-norm residual MLP blocks, each told the noise (and class) embedding through a linear map:
    h <- h + fc2(dropout(silu(fc1(silu(norm(h)) + emb_proj(e))))). Dropout has no weights, so models saved with
    and without it share their keys."""
    return nn.ModuleList(
        nn.ModuleDict(
            {
                "norm": nn.LayerNorm(hidden),
                "emb": nn.Linear(emb_dim, hidden),
                "fc1": nn.Linear(hidden, hidden),
                "drop": nn.Dropout(dropout),
                "fc2": nn.Linear(hidden, hidden),
            }
        )
        for _ in range(depth)
    )


def run_residual_blocks(blocks: nn.ModuleList, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    """Apply :func:`residual_blocks` to hidden states h (B, hidden) with the embedding emb (B, emb_dim)."""
    for block in blocks:
        z = nn.functional.silu(block["norm"](h)) + block["emb"](emb)
        h = h + block["fc2"](block["drop"](nn.functional.silu(block["fc1"](z))))
    return h


class SigmaMLP(nn.Module):
    """Residual MLP with a noise-level embedding.

    Args:
        dim: data dimension D (inputs and outputs are (B, D)).
        hidden: width of the hidden layers.
        depth: number of residual blocks.
        emb_dim: width of the noise (and class) embedding.
        num_classes: > 0 adds a class embedding of ``num_classes + 1`` rows (the last is the null class).
        fourier_scale: standard deviation of the Fourier frequencies applied to c_noise.
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 256,
        depth: int = 4,
        emb_dim: int = 64,
        num_classes: int = 0,
        fourier_scale: float = 4.0,
    ) -> None:
        super().__init__()
        if dim < 1 or hidden < 1 or depth < 1 or emb_dim < 2:
            raise DiffsightError("SigmaMLP needs dim, hidden, depth >= 1 and emb_dim >= 2")
        self.config = {
            "dim": dim,
            "hidden": hidden,
            "depth": depth,
            "emb_dim": emb_dim,
            "num_classes": num_classes,
            "fourier_scale": fourier_scale,
        }
        generator = torch.Generator().manual_seed(0)  # the frequencies are part of the architecture, fixed
        self.register_buffer("freqs", torch.randn(emb_dim // 2, generator=generator) * fourier_scale)
        self.embed = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.null_class: int | None = num_classes if num_classes > 0 else None
        self.class_embed = nn.Embedding(num_classes + 1, emb_dim) if num_classes > 0 else None
        self.inp = nn.Linear(dim, hidden)
        self.blocks = residual_blocks(hidden, emb_dim, depth)
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, dim))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor, cond: Any = None) -> torch.Tensor:
        if x_in.ndim != 2 or x_in.shape[1] != self.config["dim"]:
            raise DiffsightError(f"SigmaMLP expects (B, {self.config['dim']}) inputs, got {tuple(x_in.shape)}")
        angles = 2 * math.pi * c_noise.to(x_in.dtype)[:, None] * self.freqs[None, :]  # (B, emb_dim/2)
        emb = self.embed(torch.cat([angles.sin(), angles.cos()], dim=1))  # (B, emb_dim)
        labels = class_labels(cond, x_in.shape[0], self.null_class, x_in.device)
        if self.class_embed is not None:
            emb = emb + self.class_embed(labels)
        emb = nn.functional.silu(emb)
        return self.out(run_residual_blocks(self.blocks, self.inp(x_in), emb))
