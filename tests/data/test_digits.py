"""The bundled 8x8 digits: shape, range, labels and a stable fingerprint."""

from __future__ import annotations

import string

import torch

from diffsight.data import load_digits


def test_shape_range_and_labels() -> None:
    data = load_digits()
    assert data.samples.shape == (1797, 1, 8, 8)
    assert data.samples.dtype == torch.float32
    assert float(data.samples.min()) == -1.0 and float(data.samples.max()) == 1.0
    assert data.labels is not None and data.labels.dtype == torch.int64
    assert sorted(set(data.labels.tolist())) == list(range(10))
    assert data.class_names == tuple(str(d) for d in range(10))
    assert data.num_classes == 10
    assert torch.equal(data.factors["digit"], data.labels)


def test_fingerprint_is_stable_hex() -> None:
    a, b = load_digits(), load_digits()
    fingerprint = a.fingerprint()
    assert len(fingerprint) == 64 and set(fingerprint) <= set(string.hexdigits.lower())
    assert fingerprint == b.fingerprint()
    assert a.subset(slice(0, 100)).fingerprint() != fingerprint
    assert a.describe()["fingerprint"] == fingerprint
