"""Measurement operators of linear inverse problems (DESIGN.md, contract 6): ``y = A(x) + noise``.

Every operator maps a batch of images ``x`` of shape ``(B, *event_shape)`` to measurements ``y`` of shape
``(B, *measurement_shape)`` and carries:

- ``A(x)``: the forward model, differentiable in ``x`` (DPS backpropagates through it);
- ``A_T(y)``: the exact adjoint, ``<A x, y> = <x, A_T y>`` with the real inner product
  ``<u, v> = Re sum(conj(u) * v)`` (checked numerically for every operator in tests/tasks);
- ``pinv(y, damping=d)``: the Moore-Penrose pseudo-inverse (d = 0) or the Tikhonov-damped one
  ``A^T (A A^T + d I)^-1 y``, closed-form where it is cheap (mask, downsample, symmetric k-space mask, blur
  through its Fourier singular values) and conjugate gradients on the normal equations otherwise
  (:meth:`LinearOperator.pinv`);
- ``noise_sigma``: the noise model, white Gaussian noise of that standard deviation on every measured value
  (on the real and on the imaginary part of complex k-space values); :meth:`measure` draws from it.

Images live in the data scale of the models, [-1, 1]. Notation: ``x`` image, ``y`` measurement, ``m`` binary
mask, ``F`` the orthonormal 2-D DFT, ``H`` a transfer function (the DFT of a blur kernel).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from diffsight.errors import DiffsightError, ShapeError

__all__ = [
    "BlurOperator",
    "DownsampleOperator",
    "FourierOperator",
    "IdentityOperator",
    "LinearOperator",
    "MaskOperator",
    "cartesian_kspace_mask",
    "inner",
]


def inner(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Real inner product per sample, ``Re sum(conj(u) v)``, shape ``(B,)``; the one the adjoints satisfy."""
    prod = u.conj() * v if u.is_complex() or v.is_complex() else u * v
    return prod.real.reshape(u.shape[0], -1).sum(1) if prod.is_complex() else prod.reshape(u.shape[0], -1).sum(1)


def _event(event_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in event_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ShapeError(f"image operators need an event shape (channels, height, width), got {shape}")
    return shape  # type: ignore[return-value]


class LinearOperator:
    """Base class: a linear map from images ``(B, C, H, W)`` to measurements, with a Gaussian noise model.

    Subclasses implement :meth:`_forward` and :meth:`_adjoint` on checked tensors and may override
    :meth:`pinv` with a closed form.
    """

    name = "linear"

    def __init__(self, event_shape: Sequence[int], measurement_shape: Sequence[int], noise_sigma: float) -> None:
        self.event_shape = _event(event_shape)
        self.measurement_shape = tuple(int(s) for s in measurement_shape)
        if not math.isfinite(noise_sigma) or noise_sigma < 0:
            raise DiffsightError(f"noise_sigma must be a finite number >= 0, got {noise_sigma}")
        self.noise_sigma = float(noise_sigma)

    complex_measurements = False

    # --- checked entry points ---------------------------------------------------------------------------------

    def A(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802 (the paper's name)
        """The forward model ``A x``: ``(B, *event_shape)`` -> ``(B, *measurement_shape)``."""
        self._check(x, self.event_shape, "image")
        return self._forward(x)

    def A_T(self, y: torch.Tensor) -> torch.Tensor:  # noqa: N802
        """The adjoint ``A^T y``: ``(B, *measurement_shape)`` -> ``(B, *event_shape)`` (real images)."""
        self._check(y, self.measurement_shape, "measurement")
        return self._adjoint(y)

    def measure(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``y = A x + noise_sigma * z`` from the noise model (z standard normal, complex when y is)."""
        y = self.A(x)
        if self.noise_sigma == 0:
            return y
        if y.is_complex():
            real = torch.randn(y.shape, generator=generator, dtype=y.real.dtype, device=y.device)
            imag = torch.randn(y.shape, generator=generator, dtype=y.real.dtype, device=y.device)
            return y + self.noise_sigma * torch.complex(real, imag)
        return y + self.noise_sigma * torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)

    def pinv(self, y: torch.Tensor, *, damping: float = 0.0, iterations: int = 100, tol: float = 1e-6) -> torch.Tensor:
        """Minimum-norm least-squares solution ``A^+ y`` by conjugate gradients on ``(A^T A + d I) x = A^T y``
        (CGLS, Hestenes & Stiefel 1952), started from 0 so the iterates stay in the row space of A.

        ``damping`` d > 0 gives the Tikhonov solution ``A^T (A A^T + d I)^-1 y`` instead (d = 0: ``A^+ y``)."""
        self._check(y, self.measurement_shape, "measurement")
        b = self._adjoint(y)
        x = torch.zeros_like(b)
        r = b.clone()
        p = r.clone()
        rr = inner(r, r)
        b_norm = rr.sqrt().clamp_min(1e-30)
        view = (-1,) + (1,) * (b.ndim - 1)  # (B,) -> (B, 1, 1, 1)
        for _ in range(iterations):
            if bool((rr.sqrt() <= tol * b_norm).all()):
                break
            q = self._adjoint(self._forward(p)) + damping * p
            alpha = rr / inner(p, q).clamp_min(1e-30)
            x = x + alpha.reshape(view) * p
            r = r - alpha.reshape(view) * q
            rr_new = inner(r, r)
            p = r + (rr_new / rr.clamp_min(1e-30)).reshape(view) * p
            rr = rr_new
        return x

    # --- to implement -----------------------------------------------------------------------------------------

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _check(self, t: torch.Tensor, shape: tuple[int, ...], what: str) -> None:
        if not isinstance(t, torch.Tensor) or t.ndim != len(shape) + 1 or tuple(t.shape[1:]) != shape:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ShapeError(
                f"{self.name}: expected a batch of {what}s shaped (B, {', '.join(map(str, shape))}), got {got}; "
                f"the {what} must match the model's image size {self.event_shape}"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(event_shape={self.event_shape}, noise_sigma={self.noise_sigma:g})"


class IdentityOperator(LinearOperator):
    """Denoising: ``A = I``; the noise model alone makes the problem (``noise_sigma`` > 0 for it to be one)."""

    name = "identity"

    def __init__(self, event_shape: Sequence[int], noise_sigma: float) -> None:
        shape = _event(event_shape)
        super().__init__(shape, shape, noise_sigma)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def pinv(self, y: torch.Tensor, *, damping: float = 0.0, **_: object) -> torch.Tensor:
        return self.A_T(y) / (1 + damping)


class MaskOperator(LinearOperator):
    """Inpainting: keep the pixels where ``mask`` is 1, ``A x = m * x`` (hidden pixels read 0).

    ``A`` is an orthogonal projection, so ``A_T = A`` and ``A^+ = A``.

    Args:
        mask: 1 = observed, 0 = missing; shape ``(H, W)`` (all channels) or ``(C, H, W)``.
    """

    name = "mask"

    def __init__(self, mask: torch.Tensor, event_shape: Sequence[int], noise_sigma: float = 0.0) -> None:
        shape = _event(event_shape)
        super().__init__(shape, shape, noise_sigma)
        m = torch.as_tensor(mask)
        if m.ndim == 2:
            m = m[None].expand(shape[0], -1, -1)  # (H, W) -> (C, H, W)
        if tuple(m.shape) != shape:
            raise ShapeError(f"the mask has shape {tuple(torch.as_tensor(mask).shape)}; it must be (H, W) or {shape}")
        m = (m > 0.5).float()
        observed = int(m.sum())
        if observed == 0:
            raise DiffsightError("the mask hides every pixel: nothing is observed; mark known pixels with 1")
        if observed == m.numel():
            raise DiffsightError("the mask hides nothing: mark the missing pixels with 0 (1 = observed)")
        self.mask = m.contiguous()

    @property
    def observed_fraction(self) -> float:
        return float(self.mask.mean())

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask.to(x)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.mask.to(y)

    def pinv(self, y: torch.Tensor, *, damping: float = 0.0, **_: object) -> torch.Tensor:
        return self.A_T(y) / (1 + damping)


class DownsampleOperator(LinearOperator):
    """Super-resolution: average ``factor x factor`` blocks, ``(C, H, W)`` -> ``(C, H/f, W/f)``.

    ``A A^T = I / f^2``, so ``A^T y`` spreads each value over its block divided by ``f^2`` and
    ``A^+ y = f^2 A^T y`` repeats each value over its block (nearest-neighbour upsampling).
    """

    name = "downsample"

    def __init__(self, factor: int, event_shape: Sequence[int], noise_sigma: float = 0.0) -> None:
        c, h, w = _event(event_shape)
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2:
            raise DiffsightError(f"the downsampling factor must be an integer >= 2, got {factor!r}")
        if h % factor or w % factor:
            raise ShapeError(f"image size {h}x{w} is not divisible by the downsampling factor {factor}")
        super().__init__((c, h, w), (c, h // factor, w // factor), noise_sigma)
        self.factor = factor

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(x, self.factor)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        f = self.factor
        return y.repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1) / f**2  # (B,C,h,w) -> (B,C,H,W)

    def pinv(self, y: torch.Tensor, *, damping: float = 0.0, **_: object) -> torch.Tensor:
        return self.A_T(y) * self.factor**2 / (1 + damping * self.factor**2)  # A^T (I / f^2 + d)^-1 y


class BlurOperator(LinearOperator):
    """Deblurring: circular convolution with a Gaussian kernel of std ``blur_sigma`` pixels.

    Circular boundaries make A diagonal in the DFT basis: ``A x = F^-1 (H * F x)`` with ``H`` the DFT of the
    kernel, ``A^T y = F^-1 (conj(H) * F y)``, and the singular values are ``|H|``. The pseudo-inverse divides
    by ``H`` where ``|H| > rcond * max|H|`` and zeroes the rest (a truncated SVD); with ``damping`` it is the
    Wiener-like ``conj(H) / (|H|^2 + d)``.
    """

    name = "blur"

    def __init__(
        self, blur_sigma: float, event_shape: Sequence[int], noise_sigma: float = 0.0, rcond: float = 1e-2
    ) -> None:
        c, h, w = _event(event_shape)
        super().__init__((c, h, w), (c, h, w), noise_sigma)
        if not blur_sigma > 0:
            raise DiffsightError(f"blur_sigma must be > 0 pixels, got {blur_sigma}")
        self.blur_sigma = float(blur_sigma)
        self.rcond = float(rcond)
        dy = torch.fft.fftfreq(h, 1 / h, dtype=torch.float64)  # signed pixel offsets 0, 1, ..., -1
        dx = torch.fft.fftfreq(w, 1 / w, dtype=torch.float64)
        kernel = torch.exp(-(dy[:, None] ** 2 + dx[None, :] ** 2) / (2 * blur_sigma**2))  # (H, W), centred at 0
        kernel = kernel / kernel.sum()
        self.kernel = torch.fft.fftshift(kernel).float()  # for display: centred
        self.transfer = torch.fft.fft2(kernel).to(torch.complex64)  # H, (H, W)

    def _apply(self, x: torch.Tensor, transfer: torch.Tensor) -> torch.Tensor:
        return torch.fft.ifft2(torch.fft.fft2(x) * transfer.to(x.device)).real.to(x.dtype)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._apply(x, self.transfer)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self._apply(y, self.transfer.conj())

    def pinv(self, y: torch.Tensor, *, damping: float = 0.0, **_: object) -> torch.Tensor:
        self._check(y, self.measurement_shape, "measurement")
        if damping > 0:  # Tikhonov / Wiener: conj(H) / (|H|^2 + d)
            return self._apply(y, self.transfer.conj() / (self.transfer.abs() ** 2 + damping))
        mag = self.transfer.abs()
        keep = mag > self.rcond * mag.max()
        inverse = torch.where(keep, 1 / torch.where(keep, self.transfer, torch.ones_like(self.transfer)), 0)
        return self._apply(y, inverse)


def cartesian_kspace_mask(
    height: int,
    width: int,
    *,
    acceleration: float = 4.0,
    center_fraction: float = 0.08,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A random Cartesian undersampling mask (fastMRI style): keep whole phase-encode columns.

    The central ``center_fraction`` of the columns (low frequencies) is always kept; other columns are drawn
    at random until about ``width / acceleration`` are kept. Columns come in conjugate pairs (k, -k), so the
    mask is conjugate-symmetric and ``A^T A`` of :class:`FourierOperator` is a real orthogonal projection.
    Returns an (H, W) float mask in unshifted DFT order (index 0 = zero frequency).
    """
    if not acceleration >= 1 or not 0 <= center_fraction <= 1:
        raise DiffsightError(
            f"need acceleration >= 1 and center_fraction in [0, 1], got {acceleration}, {center_fraction}"
        )
    freqs = torch.fft.fftfreq(width, 1 / width).abs()  # |k| per column, unshifted order
    keep = freqs <= max(0.0, center_fraction * width / 2)
    target = max(int(round(width / acceleration)), int(keep.sum()))
    order = torch.randperm(width // 2 + 1, generator=generator)  # candidate |k| values
    for k in order.tolist():
        if int(keep.sum()) >= target:
            break
        keep |= freqs == k
    return keep[None, :].expand(height, width).float()


class FourierOperator(LinearOperator):
    """MRI-like k-space undersampling: ``A x = m * F x`` with the orthonormal 2-D DFT ``F`` (complex y).

    The measurement keeps the full ``(C, H, W)`` grid with zeros where k-space was not sampled. With the real
    inner product the adjoint is ``A^T y = Re F^-1 (m * y)``. For a conjugate-symmetric mask (as made by
    :func:`cartesian_kspace_mask`) ``A^T A`` is a real orthogonal projection and ``A^+ = A^T`` (the
    "zero-filled" reconstruction); other masks are symmetrised on construction, since a real image's k-space
    value at -k is the conjugate of the one at k and sampling one of the pair samples both.
    """

    name = "fourier"
    complex_measurements = True

    def __init__(self, mask: torch.Tensor, event_shape: Sequence[int], noise_sigma: float = 0.0) -> None:
        c, h, w = _event(event_shape)
        super().__init__((c, h, w), (c, h, w), noise_sigma)
        m = torch.as_tensor(mask, dtype=torch.float32)
        if tuple(m.shape) != (h, w):
            raise ShapeError(f"the k-space mask has shape {tuple(m.shape)}; it must be ({h}, {w})")
        m = (m > 0.5).float()
        mirror = torch.roll(torch.flip(m, dims=(0, 1)), shifts=(1, 1), dims=(0, 1))  # index k -> (-k) mod N
        m = torch.maximum(m, mirror)
        if int(m.sum()) == 0:
            raise DiffsightError("the k-space mask samples nothing: mark sampled frequencies with 1")
        if int(m.sum()) == m.numel():
            raise DiffsightError("the k-space mask samples every frequency: there is nothing to reconstruct")
        self.mask = m

    @property
    def sampled_fraction(self) -> float:
        return float(self.mask.mean())

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.fft2(x, norm="ortho") * self.mask.to(x.device)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return torch.fft.ifft2(y * self.mask.to(y.device), norm="ortho").real

    def pinv(self, y: torch.Tensor, *, damping: float = 0.0, **_: object) -> torch.Tensor:
        return self.A_T(y) / (1 + damping)
