"""scikit-learn's 1,797 real handwritten 8x8 digits (UCI optical recognition set), shipped inside the package.

Pixel values 0..16 are scaled to [-1, 1]; the labels are the digits 0..9. Nothing is downloaded.
"""

from __future__ import annotations

import torch

from diffsight.data.dataset import TrainingData

__all__ = ["load_digits"]


def load_digits() -> TrainingData:
    """All 1,797 digits as (1797, 1, 8, 8) images in [-1, 1] with labels 0..9."""
    from sklearn.datasets import load_digits as sklearn_digits  # bundled with scikit-learn, offline

    bunch = sklearn_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32)  # (N, 8, 8), values 0..16
    samples = (images / 16.0 * 2.0 - 1.0).unsqueeze(1)  # (N, 1, 8, 8) in [-1, 1]
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    return TrainingData(
        name="digits",
        samples=samples,
        labels=labels,
        class_names=tuple(str(d) for d in range(10)),
        factors={"digit": labels.clone()},
        factor_values={"digit": tuple(str(d) for d in range(10))},
        source={"origin": "sklearn.datasets.load_digits (UCI optical recognition of handwritten digits)"},
    )
