"""Medical image formats as model inputs: DICOM (pydicom) and NIfTI (nibabel) slices -> images in [-1, 1].

Both readers are optional: ``pip install "diffsight[medical]"``. A file becomes one (1, H, W) float32 image:

- DICOM: ``pixel_array * RescaleSlope + RescaleIntercept`` (Hounsfield units for CT); with ``window`` (centre,
  width) given, or the file's own ``WindowCenter`` / ``WindowWidth``, values are clipped to the window;
  otherwise to the slice's min..max. Then scaled linearly to [-1, 1].
- NIfTI: ``get_fdata()`` of a 2-D image, or one slice of a 3-D volume (``slice_index`` along ``axis``, default
  the middle of the last axis), scaled from min..max (or ``window``) to [-1, 1].

Nothing is resized here: a model of another size is refused by the operators with the size it expects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffsight.errors import DiffsightError

__all__ = ["MEDICAL_SUFFIXES", "load_dicom", "load_medical_image", "load_nifti"]

MEDICAL_SUFFIXES: tuple[str, ...] = (".dcm", ".dicom", ".nii", ".nii.gz")


def _need(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise DiffsightError(
            f"reading this file needs {module}: install the medical extra, pip install 'diffsight[medical]'"
        ) from None


def _to_unit(values: np.ndarray, window: tuple[float, float] | None, what: str) -> torch.Tensor:
    v = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(v)):
        raise DiffsightError(f"{what} holds NaN or infinite values")
    if window is not None:
        centre, width = float(window[0]), float(window[1])
        if not width > 0:
            raise DiffsightError(f"the window width must be > 0, got {width}")
        lo, hi = centre - width / 2, centre + width / 2
    else:
        lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        raise DiffsightError(f"{what} is constant ({lo:g}): there is no image to reconstruct")
    scaled = (np.clip(v, lo, hi) - lo) / (hi - lo) * 2 - 1  # [lo, hi] -> [-1, 1]
    return torch.from_numpy(scaled.astype(np.float32))[None]  # (H, W) -> (1, H, W)


def _first(value: Any) -> float:
    """A DICOM window value may hold several windows; take the first."""
    return float(value[0]) if hasattr(value, "__len__") and not isinstance(value, str) else float(value)


def load_dicom(path: str | Path, *, window: tuple[float, float] | None = None) -> torch.Tensor:
    """One DICOM slice as a (1, H, W) image in [-1, 1]."""
    pydicom = _need("pydicom")
    try:
        ds = pydicom.dcmread(str(path))
        pixels = ds.pixel_array
    except Exception as err:  # pydicom raises many types for broken files
        raise DiffsightError(f"{path}: not a readable DICOM image ({err})") from None
    if pixels.ndim != 2:
        raise DiffsightError(f"{path}: expected one 2-D slice, got pixel data of shape {pixels.shape}")
    values = pixels.astype(np.float64) * float(getattr(ds, "RescaleSlope", 1)) + float(
        getattr(ds, "RescaleIntercept", 0)
    )
    if window is None and "WindowCenter" in ds and "WindowWidth" in ds:
        centre, width = ds.WindowCenter, ds.WindowWidth
        try:
            window = (_first(centre), _first(width))
        except (TypeError, ValueError):
            window = None
    return _to_unit(values, window, str(path))


def load_nifti(
    path: str | Path,
    *,
    slice_index: int | None = None,
    axis: int = -1,
    window: tuple[float, float] | None = None,
) -> torch.Tensor:
    """A 2-D NIfTI image, or one slice of a 3-D volume, as a (1, H, W) image in [-1, 1]."""
    nibabel = _need("nibabel")
    try:
        data = np.asarray(nibabel.load(str(path)).get_fdata())
    except Exception as err:
        raise DiffsightError(f"{path}: not a readable NIfTI image ({err})") from None
    data = np.squeeze(data) if data.ndim > 3 else data
    if data.ndim == 3:
        n = data.shape[axis]
        index = n // 2 if slice_index is None else slice_index
        if not -n <= index < n:
            raise DiffsightError(f"{path}: slice {index} is outside the volume's {n} slices along axis {axis}")
        data = np.take(data, index, axis=axis)
    elif data.ndim != 2 or slice_index is not None:
        raise DiffsightError(f"{path}: expected a 2-D image or a 3-D volume, got shape {data.shape}")
    return _to_unit(data, window, str(path))


def load_medical_image(path: str | Path, **options: Any) -> torch.Tensor:
    """Dispatch on the suffix: ``.dcm``/``.dicom`` -> :func:`load_dicom`, ``.nii``/``.nii.gz`` -> :func:`load_nifti`."""
    name = str(path).lower()
    if not Path(path).is_file():
        raise DiffsightError(f"{path} not found")
    if name.endswith((".dcm", ".dicom")):
        return load_dicom(path, **options)
    if name.endswith((".nii", ".nii.gz")):
        return load_nifti(path, **options)
    raise DiffsightError(f"{path}: not a medical image; expected one of {', '.join(MEDICAL_SUFFIXES)}")
