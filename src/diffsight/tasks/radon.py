"""CT: the Radon transform of scikit-image as an explicit sparse matrix, so that its adjoint is exact.

``skimage.transform.radon(image, theta, circle=True)`` rotates the image by each angle with bilinear
interpolation (``skimage.transform.warp``, order 1, zero outside) and sums the columns:

    sinogram[c, i] = sum_r bilinear(image, R_i [c, r, 1]^T),
    R_i = [[cos, sin, -k (cos + sin - 1)], [-sin, cos, -k (cos - sin - 1)]],   k = n // 2.

Each output value is a fixed linear combination of pixels, so we build the matrix ``P`` (rows: detector bin
x angle; columns: pixels) once from the same bilinear weights and get ``A x = P x`` and ``A^T y = P^T y``
exactly. scikit-image's own back-projection, ``iradon(..., filter_name=None)``, is *not* that adjoint: it
interpolates the sinogram linearly instead of transposing the bilinear rotation, and it rescales by
``pi / (2 n_angles)``; ``<A x, y> = <x, A^T y>`` fails for it at the percent level (tests/tasks check both).
Filtered back-projection (``iradon`` with the ramp filter) is the classical baseline of the CT demo.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

from diffsight.errors import DiffsightError, ShapeError
from diffsight.tasks.operators import LinearOperator, _event

__all__ = ["RadonOperator", "filtered_back_projection", "radon_matrix", "sparse_view_angles"]


def sparse_view_angles(n_angles: int) -> np.ndarray:
    """``n_angles`` projection angles in degrees, evenly spaced over [0, 180)."""
    if isinstance(n_angles, bool) or not isinstance(n_angles, int | np.integer) or n_angles < 1:
        raise DiffsightError(f"the number of CT projection angles must be a positive integer, got {n_angles!r}")
    return np.linspace(0.0, 180.0, int(n_angles), endpoint=False)


@lru_cache(maxsize=8)
def _radon_coo(n: int, angles: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    k = n // 2
    r, c = np.meshgrid(np.arange(n, dtype=np.float64), np.arange(n, dtype=np.float64), indexing="ij")  # (n, n)
    rows_out, cols_out, vals_out = [], [], []
    for i, angle in enumerate(np.deg2rad(np.asarray(angles))):
        cos_a, sin_a = np.cos(angle), np.sin(angle)
        src_col = cos_a * c + sin_a * r - k * (cos_a + sin_a - 1)  # (n, n): where output (r, c) reads from
        src_row = -sin_a * c + cos_a * r - k * (cos_a - sin_a - 1)
        r0, c0 = np.floor(src_row), np.floor(src_col)
        fr, fc = src_row - r0, src_col - c0
        det = c.astype(np.int64) * len(angles) + i  # row of P: detector bin c, angle i (sinogram is (n, angles))
        for dr, dc, w in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
            rr, cc = r0 + dr, c0 + dc
            ok = (rr >= 0) & (rr < n) & (cc >= 0) & (cc < n) & (w > 0)
            rows_out.append(det[ok])
            cols_out.append((rr[ok] * n + cc[ok]).astype(np.int64))
            vals_out.append(w[ok])
    return np.concatenate(rows_out), np.concatenate(cols_out), np.concatenate(vals_out)


def radon_matrix(n: int, angles: Sequence[float]) -> torch.Tensor:
    """The sparse ``(n * n_angles, n * n)`` matrix of ``skimage.transform.radon(., angles, circle=True)`` on
    n x n images, rows in the sinogram's (detector bin, angle) order; float32, coalesced COO."""
    rows, cols, vals = _radon_coo(int(n), tuple(float(a) for a in angles))
    index = torch.from_numpy(np.stack([rows, cols]))
    return torch.sparse_coo_tensor(
        index, torch.from_numpy(vals).float(), (n * len(angles), n * n), check_invariants=False
    ).coalesce()


class RadonOperator(LinearOperator):
    """Parallel-beam CT: ``(C, n, n)`` images -> ``(C, n, n_angles)`` sinograms, scikit-image's geometry.

    Matches ``skimage.transform.radon(x, theta=angles, circle=True)`` per channel (to float rounding), with
    the exact adjoint ``P^T``. The pseudo-inverse is the base class's CGLS; for a good classical image use
    :func:`filtered_back_projection`.
    """

    name = "radon"

    def __init__(self, angles: Sequence[float], event_shape: Sequence[int], noise_sigma: float = 0.0) -> None:
        c, h, w = _event(event_shape)
        if h != w:
            raise ShapeError(f"CT needs square images (C, n, n), got event shape {tuple(event_shape)}")
        angles = [float(a) for a in angles]
        if not angles:
            raise DiffsightError("CT needs at least one projection angle")
        super().__init__((c, h, w), (c, h, len(angles)), noise_sigma)
        self.angles = np.asarray(angles)
        self.matrix = radon_matrix(h, angles)  # (n * A, n * n)
        self._matrix_t = self.matrix.t().coalesce()

    def _apply(self, matrix: torch.Tensor, t: torch.Tensor, out_shape: tuple[int, ...]) -> torch.Tensor:
        flat = t.reshape(-1, t.shape[-2] * t.shape[-1])  # (B, C, a, b) -> (B*C, a*b)
        out = torch.sparse.mm(matrix.to(device=t.device, dtype=t.dtype), flat.T).T  # (B*C, rows)
        return out.reshape(t.shape[0], *out_shape)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._apply(self.matrix, x, self.measurement_shape)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self._apply(self._matrix_t, y, self.event_shape)


def filtered_back_projection(
    sinogram: torch.Tensor, angles: Sequence[float], *, filter_name: str = "ramp"
) -> torch.Tensor:
    """Classical CT reconstruction, ``skimage.transform.iradon`` (ramp-filtered back-projection), per image and
    channel: ``(B, C, n, n_angles)`` -> ``(B, C, n, n)``."""
    from skimage.transform import iradon

    if sinogram.ndim != 4:
        raise ShapeError(f"expected sinograms shaped (B, C, n, n_angles), got {tuple(sinogram.shape)}")
    n = sinogram.shape[-2]
    theta = np.asarray(angles, dtype=np.float64)
    out = np.empty((*sinogram.shape[:2], n, n), dtype=np.float32)
    s = sinogram.detach().cpu().double().numpy()
    for b in range(s.shape[0]):
        for ch in range(s.shape[1]):
            out[b, ch] = iradon(s[b, ch], theta=theta, filter_name=filter_name, circle=True, output_size=n)
    return torch.from_numpy(out).to(sinogram.device)
