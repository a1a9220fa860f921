"""The user's own data as a NumPy ``.npy`` or ``.npz`` file: vectors or images, optionally with labels.

Files are always read with ``allow_pickle=False``: loading a pickle can run arbitrary code, so object arrays
are refused. Accepted layouts:

- (N, D) vectors, kept as given (as float32);
- (N, H, W) one-channel images, read as (N, 1, H, W);
- (N, C, H, W) or channels-last (N, H, W, C) images with C = 1 or 3.

Images are scaled to [-1, 1]: 8-bit integers (uint8, or integers within 0..255) by ``x / 255 * 2 - 1``,
uint16 by ``x / 65535 * 2 - 1``, floats within [0, 1] by ``x * 2 - 1``; floats already within [-1, 1] are kept.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from diffsight.data.dataset import TrainingData
from diffsight.errors import DiffsightError

__all__ = ["ARRAY_SUFFIXES", "SAMPLE_KEYS", "LABEL_KEYS", "load_arrays"]

ARRAY_SUFFIXES: tuple[str, ...] = (".npy", ".npz")
SAMPLE_KEYS: tuple[str, ...] = ("x", "images", "samples", "data")  # tried in this order in a .npz
LABEL_KEYS: tuple[str, ...] = ("y", "labels")
_LOAD_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError)


def load_arrays(path: str | Path, *, key: str | None = None, labels_key: str | None = None) -> TrainingData:
    """Load samples (and labels) from a ``.npy`` or ``.npz`` file.

    Args:
        path: a ``.npy`` file (one array, no labels) or a ``.npz`` file.
        key: the samples array in a ``.npz``; default: the only array, else the only one besides the labels,
            else the first of ``x``, ``images``, ``samples``, ``data``.
        labels_key: the integer labels array in a ``.npz``; default: ``y`` or ``labels`` when present.
            Label values may be any integers; they are mapped to 0..K-1 in sorted order, and the original
            values become the class names.

    Raises:
        DiffsightError: the file is missing, not .npy/.npz, corrupt, holds pickled/object data, or its arrays
            have a shape, dtype or value range that cannot be read as training data.
    """
    file = Path(path).expanduser()
    if not file.exists():
        raise DiffsightError(f"{file}: no such file; check the path to your .npy/.npz data")
    if not file.is_file():
        raise DiffsightError(f"{file}: not a file; pass a .npy or .npz file")
    if file.suffix.lower() not in ARRAY_SUFFIXES:
        raise DiffsightError(f"{file}: expected a .npy or .npz file, got {file.suffix or 'no suffix'!r}")

    data, labels, samples_key, labels_key = _read(file, key, labels_key)
    samples = _samples(file, data)
    n = samples.shape[0]
    label_tensor: torch.Tensor | None = None
    class_names: tuple[str, ...] = ()
    if labels is not None:
        label_tensor, class_names = _labels(file, labels, n, labels_key)
    return TrainingData(
        name=str(path),
        samples=samples,
        labels=label_tensor,
        class_names=class_names,
        source={"origin": "arrays", "path": str(file.resolve()), "key": samples_key, "labels_key": labels_key},
    )


def _read(
    file: Path, key: str | None, labels_key: str | None
) -> tuple[np.ndarray, np.ndarray | None, str | None, str | None]:
    """(samples, labels or None, samples key, labels key) from the file, never unpickling."""
    try:
        loaded = np.load(file, allow_pickle=False)
    except _LOAD_ERRORS as error:
        raise _load_error(file, error) from error
    if isinstance(loaded, np.ndarray):  # a .npy file
        if key is not None or labels_key is not None:
            raise DiffsightError(
                f"{file}: a .npy file holds one array, so key/labels_key do not apply; drop them, or save "
                "samples and labels together with numpy.savez(path, x=..., y=...)"
            )
        return loaded, None, None, None
    with loaded:  # an NpzFile: arrays are read (and checked) on access
        names = list(loaded.files)
        samples_key, labels_key = _pick_keys(file, names, key, labels_key)
        try:
            samples = loaded[samples_key]
            labels = None if labels_key is None else loaded[labels_key]
        except _LOAD_ERRORS as error:
            raise _load_error(file, error) from error
    return samples, labels, samples_key, labels_key


def _load_error(file: Path, error: BaseException) -> DiffsightError:
    if "pickle" in str(error).lower() or "object arrays" in str(error).lower():
        return DiffsightError(
            f"{file}: holds pickled or object arrays, which are refused (unpickling can run arbitrary code); "
            "save plain numeric arrays, e.g. numpy.save(path, images.astype(numpy.float32))"
        )
    return DiffsightError(
        f"{file}: cannot read this file ({type(error).__name__}: {error}); it is corrupt or not a NumPy "
        ".npy/.npz file. Save it again with numpy.save / numpy.savez"
    )


def _pick_keys(file: Path, names: list[str], key: str | None, labels_key: str | None) -> tuple[str, str | None]:
    """Which arrays of a .npz hold the samples and the labels (see :func:`load_arrays`)."""
    found = ", ".join(names) if names else "none"
    for given, what in ((key, "key"), (labels_key, "labels_key")):
        if given is not None and given not in names:
            raise DiffsightError(f"{file}: no array called {given!r} ({what}); the file holds: {found}")
    if not names:
        raise DiffsightError(f"{file}: the .npz file holds no arrays")
    auto_labels = labels_key or next((k for k in LABEL_KEYS if k in names and k != key), None)
    if key is None:
        rest = [k for k in names if k != auto_labels]
        if len(names) == 1:
            key = names[0]
        elif len(rest) == 1:
            key = rest[0]
        else:
            key = next((k for k in SAMPLE_KEYS if k in names), None)
        if key is None:
            raise DiffsightError(
                f"{file}: cannot tell which array holds the samples; the file holds: {found}. "
                f"Pass key=<name> (and labels_key=<name> for labels), or name the arrays {SAMPLE_KEYS[0]!r} "
                f"and {LABEL_KEYS[0]!r}"
            )
    if labels_key is not None and labels_key == key:
        raise DiffsightError(f"{file}: key and labels_key both name {key!r}; the labels must be a separate array")
    return key, (auto_labels if auto_labels != key else None)


def _samples(file: Path, data: np.ndarray) -> torch.Tensor:
    """The samples as float32: (N, D) vectors as given, or (N, C, H, W) images in [-1, 1]."""
    if data.dtype.kind not in "biuf":
        raise DiffsightError(
            f"{file}: samples must be a numeric (integer or float) array, got dtype {data.dtype}; convert it, "
            "e.g. array.astype(numpy.float32)"
        )
    if data.ndim > 0 and data.size == 0:
        raise DiffsightError(f"{file}: the samples array is empty (shape {data.shape}); it needs at least one row")
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise DiffsightError(f"{file}: the samples hold NaN or infinite values; clean them before training")
    if data.ndim == 2:
        return torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))  # (N, D)
    if data.ndim == 3:
        data = data[:, None]  # (N, H, W) -> (N, 1, H, W)
    elif data.ndim == 4:
        if data.shape[1] not in (1, 3):
            if data.shape[3] not in (1, 3):
                raise DiffsightError(
                    f"{file}: images shaped {data.shape} have no channel axis of size 1 or 3; expected "
                    "(N, C, H, W) or (N, H, W, C) with C = 1 (grayscale) or 3 (RGB)"
                )
            data = data.transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    else:
        raise DiffsightError(
            f"{file}: samples shaped {data.shape} ({data.ndim}-D) are not supported; expected (N, D) vectors, "
            "(N, H, W) grayscale images, or (N, C, H, W) / (N, H, W, C) images with C = 1 or 3"
        )
    return torch.from_numpy(_scale_images(file, data))  # (N, C, H, W) in [-1, 1]


def _scale_images(file: Path, data: np.ndarray) -> np.ndarray:
    """Images (N, C, H, W) of any numeric dtype -> float32 in [-1, 1]."""
    lo, hi = float(data.min()), float(data.max())
    if data.dtype == np.uint8 or (data.dtype.kind in "iu" and data.dtype != np.uint16 and lo >= 0 and hi <= 255):
        scaled = data.astype(np.float32) / 255.0 * 2.0 - 1.0
    elif data.dtype == np.uint16:
        scaled = data.astype(np.float32) / 65535.0 * 2.0 - 1.0
    elif data.dtype.kind == "b" or (data.dtype.kind == "f" and lo >= 0.0 and hi <= 1.0):
        scaled = data.astype(np.float32) * 2.0 - 1.0
    elif data.dtype.kind == "f" and lo >= -1.0 and hi <= 1.0:
        scaled = data.astype(np.float32)
    else:
        raise DiffsightError(
            f"{file}: image values span [{lo:g}, {hi:g}] (dtype {data.dtype}); scale them to [0, 1] or [-1, 1] "
            "as floats, or save 8-bit pixels as uint8"
        )
    return np.ascontiguousarray(scaled)


def _labels(file: Path, labels: np.ndarray, n: int, key: str | None) -> tuple[torch.Tensor, tuple[str, ...]]:
    """Labels (N,) of any integer values -> (indices 0..K-1 as int64, the sorted original values as names)."""
    what = f"labels {key!r}" if key else "labels"
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]  # (N, 1) -> (N,)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise DiffsightError(f"{file}: {what} must be shaped ({n},), one per sample, got {labels.shape}")
    if labels.dtype.kind == "f" and np.isfinite(labels).all() and np.array_equal(labels, np.round(labels)):
        labels = labels.astype(np.int64)  # whole-number floats, e.g. from pandas
    if labels.dtype.kind not in "biu":
        raise DiffsightError(
            f"{file}: {what} must be integers (class ids), got dtype {labels.dtype}; convert them, "
            "e.g. labels.astype(numpy.int64)"
        )
    values, index = np.unique(labels, return_inverse=True)
    return torch.from_numpy(index.reshape(-1).astype(np.int64)), tuple(str(int(v)) for v in values)
