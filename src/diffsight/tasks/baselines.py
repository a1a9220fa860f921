"""Classical reconstructions, the baselines the diffusion solvers must beat, and the image quality scores.

| task | baseline |
|---|---|
| inpaint | biharmonic inpainting (``skimage.restoration.inpaint_biharmonic``; Damelin & Hoang 2018) |
| denoise | total-variation denoising (``skimage.restoration.denoise_tv_chambolle``; Chambolle 2004) |
| superres | bicubic interpolation (``skimage.transform.resize``, order 3) |
| deblur | Tikhonov-regularised inverse filter, ``conj(H) Y / (|H|^2 + max(sigma_y^2, 1e-3))`` |
| mri | zero-filled inverse FFT (the pseudo-inverse ``A^+ y``) |
| ct | filtered back-projection (``skimage.transform.iradon``, ramp filter) |

PSNR and SSIM come from ``skimage.metrics`` with the stated data range.
"""

from __future__ import annotations

import numpy as np
import torch

from diffsight.errors import DiffsightError
from diffsight.tasks.operators import (
    BlurOperator,
    DownsampleOperator,
    FourierOperator,
    IdentityOperator,
    LinearOperator,
    MaskOperator,
)
from diffsight.tasks.radon import RadonOperator, filtered_back_projection

__all__ = ["baseline_reconstruction", "psnr", "ssim"]


def _per_channel(x: torch.Tensor, fn: object) -> torch.Tensor:
    arr = x.detach().cpu().double().numpy()
    out = np.stack([np.stack([fn(arr[b, c], b, c) for c in range(arr.shape[1])]) for b in range(arr.shape[0])])  # type: ignore[operator]
    return torch.from_numpy(out.astype(np.float32))


def baseline_reconstruction(operator: LinearOperator, y: torch.Tensor) -> torch.Tensor:
    """The classical reconstruction for ``operator``'s task from measurements ``y`` (B, *measurement_shape)."""
    from skimage.restoration import denoise_tv_chambolle, inpaint_biharmonic
    from skimage.transform import resize

    operator.A_T(y)  # shape check
    if isinstance(operator, MaskOperator):
        hole = (operator.mask < 0.5).numpy()
        return _per_channel(y, lambda im, b, c: inpaint_biharmonic(im, hole[c]))
    if isinstance(operator, IdentityOperator):
        weight = max(operator.noise_sigma, 1e-3)
        return _per_channel(y, lambda im, b, c: denoise_tv_chambolle(im, weight=weight))
    if isinstance(operator, DownsampleOperator):
        h, w = operator.event_shape[1:]
        return _per_channel(y, lambda im, b, c: resize(im, (h, w), order=3, mode="edge", anti_aliasing=False))
    if isinstance(operator, BlurOperator):
        lam = max(operator.noise_sigma**2, 1e-3)
        transfer = operator.transfer
        inverse = transfer.conj() / (transfer.abs() ** 2 + lam)
        return torch.fft.ifft2(torch.fft.fft2(y) * inverse).real.float()
    if isinstance(operator, FourierOperator):
        return operator.pinv(y)
    if isinstance(operator, RadonOperator):
        return filtered_back_projection(y, operator.angles)
    raise DiffsightError(f"no classical baseline for {type(operator).__name__}")


def psnr(estimate: torch.Tensor, truth: torch.Tensor, *, data_range: float = 2.0) -> float:
    """Mean PSNR (dB) over a batch (B, C, H, W); ``data_range`` 2 for images in [-1, 1]."""
    from skimage.metrics import peak_signal_noise_ratio

    a, t = estimate.detach().cpu().double().numpy(), truth.detach().cpu().double().numpy()
    return float(np.mean([peak_signal_noise_ratio(t[i], a[i], data_range=data_range) for i in range(len(a))]))


def ssim(estimate: torch.Tensor, truth: torch.Tensor, *, data_range: float = 2.0) -> float:
    """Mean SSIM over a batch (B, C, H, W) (Wang et al. 2004; 7x7 windows, or the image side if smaller)."""
    from skimage.metrics import structural_similarity

    a, t = estimate.detach().cpu().double().numpy(), truth.detach().cpu().double().numpy()
    side = min(t.shape[-2:])
    win = min(7, side if side % 2 else side - 1)
    return float(
        np.mean(
            [
                structural_similarity(t[i], a[i], data_range=data_range, channel_axis=0, win_size=win)
                for i in range(len(a))
            ]
        )
    )
