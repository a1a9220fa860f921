"""The in-memory training set every loader returns.

diffsight trains small models on small data, so a dataset is one tensor in memory: images scaled to [-1, 1]
shaped (N, C, H, W), or vectors shaped (N, D). Optional integer class labels drive class conditioning;
optional named factors (shape, colour, ...) are ground truth for probes, explainers and bias audits.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch

from diffsight.errors import DiffsightError, ShapeError

__all__ = ["TrainingData"]


@dataclass(frozen=True)
class TrainingData:
    """A dataset held in memory.

    Attributes:
        name: where it came from (``"digits"``, a folder path, ...).
        samples: float32 tensor, (N, C, H, W) images in [-1, 1] or (N, D) vectors.
        labels: int64 tensor (N,) of class indices, or None for unlabelled data.
        class_names: one name per class index (``len(class_names)`` classes), empty when unlabelled.
        factors: name -> int64 tensor (N,) of factor values (ground truth for probes and audits).
        factor_values: name -> the readable value of each factor index.
        source: free-form provenance recorded in model cards (e.g. the generator's parameters).
    """

    name: str
    samples: torch.Tensor
    labels: torch.Tensor | None = None
    class_names: tuple[str, ...] = ()
    factors: dict[str, torch.Tensor] = field(default_factory=dict)
    factor_values: dict[str, tuple[str, ...]] = field(default_factory=dict)
    source: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.samples.ndim not in (2, 4):
            raise ShapeError(
                f"{self.name}: samples must be (N, D) vectors or (N, C, H, W) images, got {tuple(self.samples.shape)}"
            )
        if self.samples.shape[0] == 0:
            raise DiffsightError(f"{self.name}: the dataset is empty")
        if not torch.isfinite(self.samples).all():
            raise DiffsightError(f"{self.name}: the data holds NaN or infinite values; clean it before training")
        n = self.samples.shape[0]
        if self.labels is not None:
            if self.labels.shape != (n,):
                raise ShapeError(f"{self.name}: labels must be shaped ({n},), got {tuple(self.labels.shape)}")
            if len(self.class_names) == 0:
                raise DiffsightError(f"{self.name}: labelled data needs class_names")
            if int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.class_names):
                raise DiffsightError(f"{self.name}: labels must lie in [0, {len(self.class_names)})")
        for key, values in self.factors.items():
            if values.shape != (n,):
                raise ShapeError(f"{self.name}: factor {key!r} must be shaped ({n},), got {tuple(values.shape)}")
            if key not in self.factor_values:
                raise DiffsightError(f"{self.name}: factor {key!r} has no factor_values")

    def __len__(self) -> int:
        return int(self.samples.shape[0])

    @property
    def is_image(self) -> bool:
        return self.samples.ndim == 4

    @property
    def event_shape(self) -> tuple[int, ...]:
        """Shape of one sample: (C, H, W) or (D,)."""
        return tuple(self.samples.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.labels is not None else 0

    def fingerprint(self) -> str:
        """SHA-256 of the samples, labels and factors: identifies the exact training data in a model card."""
        digest = hashlib.sha256()
        digest.update(str(tuple(self.samples.shape)).encode())
        digest.update(np.ascontiguousarray(self.samples.detach().cpu().numpy(), dtype=np.float32).tobytes())
        if self.labels is not None:
            digest.update(self.labels.cpu().numpy().astype(np.int64).tobytes())
        for key in sorted(self.factors):
            digest.update(key.encode())
            digest.update(self.factors[key].cpu().numpy().astype(np.int64).tobytes())
        return digest.hexdigest()

    def subset(self, index: torch.Tensor | slice) -> TrainingData:
        """The rows picked by ``index`` (a slice, boolean mask or integer index tensor)."""
        return TrainingData(
            name=self.name,
            samples=self.samples[index],
            labels=None if self.labels is None else self.labels[index],
            class_names=self.class_names,
            factors={k: v[index] for k, v in self.factors.items()},
            factor_values=dict(self.factor_values),
            source=dict(self.source),
        )

    def describe(self) -> dict[str, object]:
        """A JSON-ready summary for model cards and ``diffsight.json``."""
        return {
            "name": self.name,
            "n": len(self),
            "shape": list(self.event_shape),
            "classes": list(self.class_names),
            "factors": {k: list(v) for k, v in self.factor_values.items()},
            "fingerprint": self.fingerprint(),
            "source": self.source,
        }
