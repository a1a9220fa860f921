"""A small CNN that recognises the generative factors of an image: the feature network of our offline metrics.

Inception-based FID, KID and precision/recall need weights downloaded from the internet and were trained on
ImageNet, far from 8x8 digits or 16x16 shapes. Following shared/research/core_perf.md, section 8, diffsight
instead trains a small classifier on the same domain, once, with a fixed seed, and ships its weights:

- its penultimate embedding ``features(x)`` (B, feature_dim) is the feature space of the Fréchet distance
  (Heusel et al. 2017) and of improved precision/recall (Kynkäänniemi et al. 2019);
- its heads (one per factor: digit, or shape/colour/size/position/background) read generated samples for
  factor histograms, bias audits and conditional accuracy.

Architecture (``r`` = resolution, ``w`` = width)::

    x (B, C, r, r)
    -> conv3x3(C -> w), GroupNorm, SiLU                                  (B, w, r, r)
    -> [conv3x3 stride 2 (-> 2w), GroupNorm, SiLU] while the side is > 4  (B, 2w, 4, 4) for r = 8 or 16
    -> conv3x3(2w -> 2w), GroupNorm, SiLU                                (B, 2w, 4, 4)
    -> average pool to a 2x2 grid, flatten                               (B, 8w)
    -> linear -> feature_dim, SiLU                                       (B, feature_dim)   = features(x)
    -> one linear head per factor                                        (B, K_factor)      = forward(x)[factor]

The last pooling keeps a 2x2 grid instead of a global average: a global pool would make the network blind to
*where* a shape sits, and position is one of the factors. Everything is differentiable in the input, so
gradient explainers can backpropagate through it; the caller owns grad mode (it works under ``no_grad`` too).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from diffsight.errors import DiffsightError, ShapeError

__all__ = ["FactorClassifier"]


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


class FactorClassifier(nn.Module):
    """CNN with a shared embedding and one classification head per factor.

    Args:
        in_channels: image channels C (1 for digits, 3 for shapes).
        resolution: image side r; inputs must be (B, C, r, r).
        heads: factor name -> number of values K (e.g. ``{"digit": 10}``).
        width: channels of the first convolution; deeper layers use ``2 * width``.
        feature_dim: size of the embedding returned by :meth:`features`.
        factor_values: optional factor name -> readable name of each value (kept in ``config`` for reports).

    Attributes:
        config: the constructor arguments as a JSON-ready dict; ``FactorClassifier(**config)`` rebuilds the net.
        report: free-form training report (validation accuracies, seeds, ...) filled by training or loading.
    """

    def __init__(
        self,
        in_channels: int,
        resolution: int,
        heads: Mapping[str, int],
        width: int = 32,
        feature_dim: int = 64,
        factor_values: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        super().__init__()
        if in_channels < 1 or resolution < 4 or width < 1 or feature_dim < 1:
            raise DiffsightError(
                f"FactorClassifier needs in_channels >= 1, resolution >= 4, width >= 1 and feature_dim >= 1; "
                f"got in_channels={in_channels}, resolution={resolution}, width={width}, feature_dim={feature_dim}"
            )
        if not heads:
            raise DiffsightError("FactorClassifier needs at least one head, e.g. heads={'digit': 10}")
        for name, k in heads.items():
            if not name or "." in name or int(k) < 2:
                raise DiffsightError(f"head {name!r}: names must be non-empty without '.', and K >= 2 (got K={k})")
        values = {name: [str(v) for v in vs] for name, vs in (factor_values or {}).items() if name in heads}
        for name, vs in values.items():
            if len(vs) != int(heads[name]):
                raise DiffsightError(f"factor_values[{name!r}] names {len(vs)} values but the head has {heads[name]}")
        self.config: dict[str, Any] = {
            "in_channels": int(in_channels),
            "resolution": int(resolution),
            "heads": {name: int(k) for name, k in heads.items()},
            "width": int(width),
            "feature_dim": int(feature_dim),
            "factor_values": values,
        }
        self.report: dict[str, Any] = {}

        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1), _norm(width), nn.SiLU()]
        side, channels = resolution, width
        while side > 4:
            layers += [nn.Conv2d(channels, 2 * width, 3, stride=2, padding=1), _norm(2 * width), nn.SiLU()]
            side, channels = (side + 1) // 2, 2 * width
        layers += [nn.Conv2d(channels, channels, 3, padding=1), _norm(channels), nn.SiLU()]
        self.body = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(4 * channels, feature_dim), nn.SiLU())
        self.heads = nn.ModuleDict({name: nn.Linear(feature_dim, int(k)) for name, k in heads.items()})

    @property
    def factors(self) -> list[str]:
        """The factor names, in head order."""
        return list(self.config["heads"])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one input image."""
        r = self.config["resolution"]
        return (self.config["in_channels"], r, r)

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ShapeError(
                f"this classifier reads images shaped (B, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(x.shape)}; use a classifier trained on this kind of data"
            )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate embedding (B, feature_dim) of images x (B, C, r, r) in [-1, 1]."""
        self._check(x)
        return self.embed(self.pool(self.body(x)))  # (B, C, r, r) -> (B, 2w, 4, 4) -> (B, 2w, 2, 2) -> (B, F)

    def logits_from_features(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        """Apply every head to embeddings h (B, feature_dim): factor -> logits (B, K)."""
        return {name: head(h) for name, head in self.heads.items()}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Factor name -> logits (B, K) for images x (B, C, r, r)."""
        return self.logits_from_features(self.features(x))

    def probabilities(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Factor name -> class probabilities (B, K) (softmax of the logits)."""
        return {name: logits.softmax(dim=-1) for name, logits in self(x).items()}
