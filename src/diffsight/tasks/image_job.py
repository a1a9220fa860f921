"""The job behind ``diffsight reconstruct``: read an input, build the task's operator, solve, calibrate, write.

Two ways to hand in data (``--input``):

- the **measurement** itself (default): an image of the model's size for inpaint (with ``--mask``, or NaN
  pixels in a .npy), denoise and deblur; a smaller image for superres (the factor is the size ratio); a .npy
  sinogram (n, angles) for ct; a complex .npy k-space (H, W), zero where not sampled, for mri;
- ``simulate=True``: the input is a clean image; the measurement is drawn from the task's operator and noise
  model with ``seed``, and the result is scored (PSNR/SSIM) against the input beside the classical baseline.

With ``uncertainty``, K posterior samples give a per-pixel std, and split-conformal calibration on the
model's held-out images (measured the same way) turns it into intervals of the stated coverage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffsight.errors import DiffsightError, unknown_name
from diffsight.tasks.baselines import baseline_reconstruction, psnr, ssim
from diffsight.tasks.conformal import calibrate_intervals, coverage_report
from diffsight.tasks.operators import (
    BlurOperator,
    DownsampleOperator,
    FourierOperator,
    IdentityOperator,
    LinearOperator,
    MaskOperator,
    cartesian_kspace_mask,
)
from diffsight.tasks.posterior import reconstruct
from diffsight.tasks.radon import RadonOperator, sparse_view_angles

__all__ = [
    "DEFAULT_METHODS",
    "TASKS",
    "ReconstructJob",
    "ReconstructResult",
    "build_operator",
    "calibrate_on_heldout",
    "run_reconstruct_job",
]

TASKS: tuple[str, ...] = ("inpaint", "denoise", "superres", "deblur", "ct", "mri")
DEFAULT_METHODS: dict[str, str] = {
    "inpaint": "repaint",
    "denoise": "denoise",
    "superres": "projection",
    "deblur": "projection",
    "ct": "projection",
    "mri": "projection",
}
_DEFAULT_NOISE = {"denoise": 0.2}


@dataclass(frozen=True)
class ReconstructJob:
    """Everything ``diffsight reconstruct`` needs; mapped 1:1 to its flags."""

    model: str
    task: str
    input: Path
    out: Path
    samples: int = 8
    uncertainty: bool = False
    seed: int = 0
    method: str | None = None
    steps: int | None = None
    noise: float | None = None
    mask: Path | None = None
    factor: int = 2
    blur: float = 1.0
    angles: int | None = None
    acceleration: float = 2.5
    simulate: bool = False
    alpha: float = 0.1
    calibration: int = 24
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReconstructResult:
    """What was written, and the numbers."""

    files: tuple[Path, ...]
    summary: dict[str, Any]


def _read_array(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DiffsightError(f"{path} not found")
    name = path.name.lower()
    if name.endswith(".npy"):
        return np.load(path, allow_pickle=False)
    if name.endswith((".dcm", ".dicom", ".nii", ".nii.gz")):
        from diffsight.tasks.medical_io import load_medical_image

        return load_medical_image(path).numpy()
    if name.endswith((".png", ".jpg", ".jpeg")):
        from PIL import Image

        with Image.open(path) as im:
            mode = "L" if im.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"
            arr = np.asarray(im.convert(mode), dtype=np.float32) / 127.5 - 1  # [0, 255] -> [-1, 1]
        return arr if arr.ndim == 2 else arr.transpose(2, 0, 1)  # (H, W, 3) -> (3, H, W)
    raise DiffsightError(f"{path}: unsupported input; use .png/.jpg, .npy, DICOM (.dcm) or NIfTI (.nii/.nii.gz)")


def _as_image(arr: np.ndarray, channels: int, what: str) -> torch.Tensor:
    if np.iscomplexobj(arr):
        raise DiffsightError(f"{what} is complex; only the mri task takes complex k-space")
    a = np.asarray(arr, dtype=np.float32)
    if a.ndim == 2:
        a = np.repeat(a[None], channels, axis=0)  # (H, W) -> (C, H, W)
    if a.ndim != 3 or a.shape[0] != channels:
        raise DiffsightError(f"{what} has shape {a.shape}; the model needs {channels} channel(s), (C, H, W) or (H, W)")
    return torch.from_numpy(a)[None]  # (1, C, H, W)


def _size_error(what: str, got: tuple[int, ...], want: tuple[int, ...]) -> DiffsightError:
    return DiffsightError(
        f"{what} is {got[-2]}x{got[-1]} but the model works on {want[-2]}x{want[-1]} images: resize the input or "
        "use a model trained at that size"
    )


def build_operator(job: ReconstructJob, event_shape: tuple[int, ...], measured: torch.Tensor | None) -> LinearOperator:
    """The task's operator; ``measured`` (the observed measurement, when not simulating) fixes unknowns."""
    c, h, w = event_shape
    noise = _DEFAULT_NOISE.get(job.task, 0.01) if job.noise is None else job.noise
    gen = torch.Generator().manual_seed(job.seed + 1)
    if job.task == "inpaint":
        if job.mask is not None:
            # nonzero = known; a PNG reads as [-1, 1], so white (> 0) = known and black = missing
            mask = (torch.from_numpy(np.asarray(_read_array(job.mask), dtype=np.float32)) > 0).float()
            if tuple(mask.shape[-2:]) != (h, w):
                raise _size_error("the mask", tuple(mask.shape), event_shape)
        elif measured is not None and bool(torch.isnan(measured).any()):
            mask = (~torch.isnan(measured[0])).float()
        elif job.simulate:
            mask = torch.ones(h, w)
            mask[h // 4 : h - h // 4, w // 4 : w - w // 4] = 0  # hide the central square (a quarter of the area)
        else:
            raise DiffsightError(
                "inpainting needs to know the missing pixels: pass --mask FILE or NaNs in a .npy input"
            )
        return MaskOperator(mask, event_shape, noise)
    if job.task == "denoise":
        if not noise > 0:
            raise DiffsightError("denoising needs the noise level of the input: pass --noise SIGMA (data units)")
        return IdentityOperator(event_shape, noise)
    if job.task == "superres":
        factor = job.factor
        if measured is not None:
            if h % measured.shape[-2] or measured.shape[-2] * w != measured.shape[-1] * h:
                raise DiffsightError(
                    f"a {measured.shape[-2]}x{measured.shape[-1]} image does not divide the model's {h}x{w}"
                )
            factor = h // measured.shape[-2]
        return DownsampleOperator(factor, event_shape, noise)
    if job.task == "deblur":
        return BlurOperator(job.blur, event_shape, noise)
    if job.task == "ct":
        n_angles = job.angles or (int(measured.shape[-1]) if measured is not None else max(4, h // 2))
        return RadonOperator(sparse_view_angles(n_angles), event_shape, noise)
    if job.task == "mri":
        if measured is not None:
            return FourierOperator((measured[0, 0].abs() > 0).float(), event_shape, noise)
        mask = cartesian_kspace_mask(h, w, acceleration=job.acceleration, center_fraction=0.2, generator=gen)
        return FourierOperator(mask, event_shape, noise)
    raise unknown_name("task", job.task, list(TASKS))


def _read_measurement(job: ReconstructJob, event_shape: tuple[int, ...]) -> torch.Tensor:
    arr = _read_array(job.input)
    c, h, w = event_shape
    if job.task == "mri":
        if not np.iscomplexobj(arr) or arr.shape[-2:] != (h, w):
            raise DiffsightError(f"mri input must be a complex .npy k-space of shape ({h}, {w}), got {arr.shape}")
        k = torch.from_numpy(np.asarray(arr, dtype=np.complex64))
        return k.reshape(1, 1, h, w).expand(1, c, h, w).clone()
    if job.task == "ct":
        a = np.asarray(arr, dtype=np.float32)
        if a.ndim != 2 or a.shape[0] != h:
            raise DiffsightError(f"ct input must be a .npy sinogram of shape ({h}, angles), got {a.shape}")
        return torch.from_numpy(a)[None, None].expand(1, c, *a.shape).clone()
    image = _as_image(arr, c, str(job.input))
    if job.task != "superres" and tuple(image.shape[-2:]) != (h, w):
        raise _size_error(str(job.input), tuple(image.shape), event_shape)
    return image


def _write(image: torch.Tensor, path: Path, *, heat: bool = False) -> Path:
    from diffsight.atomic import write_bytes_atomic
    from diffsight.data.image_io import grid_png_bytes, heatmap_png_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".npy":
        import io

        buffer = io.BytesIO()
        np.save(buffer, image.detach().cpu().numpy())
        write_bytes_atomic(path, buffer.getvalue())
    elif heat:
        write_bytes_atomic(path, heatmap_png_bytes(image[0].mean(0), scale=8))
    else:
        write_bytes_atomic(path, grid_png_bytes(image, nrow=1, scale=8, pad=0))
    return path


def run_reconstruct_job(job: ReconstructJob) -> ReconstructResult:
    """Run one reconstruction job; see the module docstring."""
    from diffsight.models import load_model

    if job.task not in TASKS:
        raise unknown_name("task", job.task, list(TASKS))
    if job.out.suffix.lower() not in (".png", ".npy"):
        raise DiffsightError(f"-o must end in .png or .npy, got {job.out.name}")
    loaded = load_model(job.model)
    if len(loaded.event_shape) != 3:
        raise DiffsightError(f"{loaded.name} is not an image model (event shape {loaded.event_shape})")
    event = loaded.event_shape
    truth = None
    if job.simulate:
        truth = _as_image(_read_array(job.input), event[0], str(job.input))
        if tuple(truth.shape[1:]) != event:
            raise _size_error(str(job.input), tuple(truth.shape), event)
        op = build_operator(job, event, None)
        y = op.measure(truth, generator=torch.Generator().manual_seed(job.seed))
    else:
        y = _read_measurement(job, event)
        op = build_operator(job, event, y)
        if job.task == "inpaint":
            y = torch.nan_to_num(y) * op.mask
    method = job.method or DEFAULT_METHODS[job.task]
    options = dict(job.options)
    if job.steps is not None:
        options["steps"] = job.steps
    gen = torch.Generator().manual_seed(job.seed)
    with torch.no_grad():
        rec = reconstruct(loaded.denoiser, op, y, method=method, samples=job.samples, generator=gen, **options)
    files = [_write(rec.mean, job.out)]
    summary: dict[str, Any] = {
        "model": loaded.name,
        "task": job.task,
        "method": method,
        "samples": job.samples,
        "nfe_per_sample": rec.nfe,
        "seconds": round(rec.seconds, 3),
    }
    if truth is not None:
        base = baseline_reconstruction(op, y).clamp(-1, 1)
        summary["psnr"] = round(psnr(rec.mean.clamp(-1, 1), truth), 2)
        summary["ssim"] = round(ssim(rec.mean.clamp(-1, 1), truth), 3)
        summary["baseline_psnr"] = round(psnr(base, truth), 2)
        summary["baseline_ssim"] = round(ssim(base, truth), 3)
    if job.uncertainty:
        if job.samples < 2:
            raise DiffsightError("--uncertainty needs --samples of at least 2 (the std is taken over samples)")
        stem = job.out.with_suffix("")
        suffix = job.out.suffix
        files.append(_write(rec.std, Path(f"{stem}-std{suffix}"), heat=True))
        calibration = calibrate_on_heldout(loaded, op, method, job, options)
        if calibration is not None:
            lo, hi = calibration.intervals(rec.mean, rec.std)
            files.append(_write(lo, Path(f"{stem}-lower{suffix}")))
            files.append(_write(hi, Path(f"{stem}-upper{suffix}")))
            summary["interval_coverage_stated"] = calibration.coverage
            summary["interval_scale"] = round(calibration.scale, 4)
            summary["calibration_images"] = calibration.n_calibration
            if truth is not None:
                summary["interval_coverage_observed"] = round(
                    coverage_report(calibration, rec.mean, rec.std, truth).empirical, 4
                )
        else:
            summary["intervals"] = "not written: the model has no held-out images to calibrate on"
    json_path = job.out.with_suffix(".json")
    from diffsight.atomic import write_bytes_atomic

    write_bytes_atomic(json_path, json.dumps(summary, indent=2).encode())
    files.append(json_path)
    return ReconstructResult(tuple(files), summary)


def calibrate_on_heldout(
    loaded: Any, op: LinearOperator, method: str, job: ReconstructJob, options: dict[str, Any]
) -> Any:
    """Split-conformal calibration of the per-pixel intervals on the model's held-out images (reconstructed with
    the same operator, solver and options), or None when the model holds none out or too few for ``job.alpha``."""
    from diffsight.metrics.model_eval import heldout_data_of

    try:
        held = heldout_data_of(loaded).samples[: job.calibration]
    except Exception:  # no recorded data for this model folder
        return None
    if held.shape[0] < int(1 / job.alpha):
        return None
    gen = torch.Generator().manual_seed(job.seed + 7)
    y = op.measure(held, generator=gen)
    with torch.no_grad():
        rec = reconstruct(loaded.denoiser, op, y, method=method, samples=job.samples, generator=gen, **options)
    return calibrate_intervals(rec.mean, rec.std, held, alpha=job.alpha)
