"""CT phantoms and the prior of the sparse-view CT demo, built here with no download and no training.

- :func:`shepp_logan` is scikit-image's Shepp-Logan phantom (``skimage.data.shepp_logan_phantom``, shipped
  inside the package), resized to the demo's size; the image to reconstruct.
- :func:`random_ellipse_phantoms` draws procedural phantoms of the same kind: a head-like outer ellipse with
  a thin bright skull, and 3-8 random inner ellipses of random density, rotation and size, all inside the
  reconstruction circle. Seeded; nothing is copied from the Shepp-Logan geometry.
- :func:`gaussian_prior` fits N(mean, cov) to such phantoms and returns the exact Gaussian denoiser
  (:class:`~diffsight.oracles.GaussianOracle`). The demo uses it as the prior: it is the one prior whose
  posterior we can compute in closed form, it needs no training (a UNet prior at 64x64 does not train in a
  few CPU minutes), and it still shows the point of a prior against filtered back-projection from few views.
  A trained model drops in the same way (``diffsight reconstruct MODEL --task ct``).

Images are attenuation in [0, 1] with 0 outside the body, so that the Radon transform sees zero outside the
reconstruction circle, as CT expects.
"""

from __future__ import annotations

import numpy as np
import torch

from diffsight.errors import DiffsightError
from diffsight.oracles import GaussianOracle

__all__ = ["gaussian_prior", "random_ellipse_phantoms", "shepp_logan"]


def shepp_logan(size: int = 64) -> torch.Tensor:
    """scikit-image's Shepp-Logan phantom (400x400, values in [0, 1]) resized to (1, 1, size, size)."""
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    if size < 8:
        raise DiffsightError(f"the phantom needs at least 8x8 pixels, got size={size}")
    image = resize(shepp_logan_phantom(), (size, size), anti_aliasing=True, preserve_range=True)
    return torch.from_numpy(np.clip(image, 0, 1).astype(np.float32))[None, None]


def _ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ay: float, ax: float, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
    return (u / ax) ** 2 + (v / ay) ** 2 <= 1


def random_ellipse_phantoms(n: int, size: int = 64, *, seed: int = 0) -> torch.Tensor:
    """``n`` procedural phantoms (n, 1, size, size) in [0, 1]; the same seed gives the same phantoms."""
    if n < 1 or size < 8:
        raise DiffsightError(f"need n >= 1 phantoms of size >= 8, got n={n}, size={size}")
    rng = np.random.default_rng(seed)
    grid = (np.arange(size) + 0.5) / size * 2 - 1  # pixel centres in [-1, 1]
    yy, xx = np.meshgrid(grid, grid, indexing="ij")  # (size, size)
    out = np.zeros((n, size, size), dtype=np.float64)
    for i in range(n):
        ay, ax = rng.uniform(0.82, 0.95), rng.uniform(0.62, 0.76)  # head half-axes (image half-width = 1)
        angle = rng.uniform(-0.15, 0.15)
        skull = rng.uniform(0.03, 0.07)  # relative thickness of the bright rim
        head = _ellipse(yy, xx, 0, 0, ay, ax, angle)
        brain = _ellipse(yy, xx, 0, 0, ay * (1 - skull), ax * (1 - skull * 1.3), angle)
        img = np.where(head, 1.0, 0.0)
        img = np.where(brain, rng.uniform(0.15, 0.25), img)  # bright skull ring, darker inside
        for _ in range(rng.integers(3, 11)):
            r = rng.uniform(0.0, 0.7)
            t = rng.uniform(0, 2 * np.pi)
            cy, cx = r * np.sin(t) * ay, r * np.cos(t) * ax
            inner = _ellipse(yy, xx, cy, cx, rng.uniform(0.03, 0.35), rng.uniform(0.03, 0.25), rng.uniform(0, np.pi))
            img = np.where(inner & brain, img + rng.uniform(-0.2, 0.15), img)
        out[i] = np.clip(img, 0, 1)
    return torch.from_numpy(out.astype(np.float32))[:, None]


def gaussian_prior(images: torch.Tensor, *, ridge: float = 1e-4) -> GaussianOracle:
    """The exact denoiser of N(mean, cov + ridge I) fitted to images (N, C, H, W)."""
    if images.ndim != 4 or images.shape[0] < 2:
        raise DiffsightError(f"need at least 2 images shaped (N, C, H, W), got {tuple(images.shape)}")
    flat = images.reshape(images.shape[0], -1).double()  # (N, d)
    mean = flat.mean(0)
    centred = flat - mean
    cov = centred.T @ centred / (flat.shape[0] - 1) + ridge * torch.eye(flat.shape[1], dtype=torch.float64)
    return GaussianOracle(mean.reshape(images.shape[1:]), cov)
