"""Operators: exact adjoints (<Ax, y> = <x, A^T y>), pseudo-inverses, noise models, refusals; CT matches skimage."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from diffsight.errors import DiffsightError, ShapeError
from diffsight.tasks.operators import (
    BlurOperator,
    DownsampleOperator,
    FourierOperator,
    IdentityOperator,
    MaskOperator,
    cartesian_kspace_mask,
    inner,
)
from diffsight.tasks.radon import RadonOperator, filtered_back_projection, sparse_view_angles

pytestmark = pytest.mark.usefixtures("one_thread")

EVENT = (2, 12, 12)


def _mask() -> torch.Tensor:
    m = torch.ones(12, 12)
    m[3:9, 4:10] = 0
    return m


def _operators() -> dict[str, object]:
    g = torch.Generator().manual_seed(0)
    return {
        "identity": IdentityOperator(EVENT, 0.1),
        "mask": MaskOperator(_mask(), EVENT, 0.05),
        "downsample": DownsampleOperator(3, EVENT, 0.05),
        "blur": BlurOperator(1.3, EVENT, 0.05),
        "fourier": FourierOperator(cartesian_kspace_mask(12, 12, acceleration=3, generator=g), EVENT, 0.05),
        "radon": RadonOperator(sparse_view_angles(7), EVENT, 0.05),
    }


def _random_measurement(op: object, b: int, g: torch.Generator) -> torch.Tensor:
    shape = (b, *op.measurement_shape)  # type: ignore[attr-defined]
    y = torch.randn(shape, generator=g, dtype=torch.float64)
    if op.complex_measurements:  # type: ignore[attr-defined]
        y = torch.complex(y, torch.randn(shape, generator=g, dtype=torch.float64))
    return y


@pytest.mark.parametrize("name", list(_operators()))
def test_adjoint_is_exact(name: str) -> None:
    op = _operators()[name]
    g = torch.Generator().manual_seed(1)
    x = torch.randn((3, *EVENT), generator=g, dtype=torch.float64)
    y = _random_measurement(op, 3, g)
    lhs, rhs = inner(op.A(x), y), inner(x, op.A_T(y))
    assert torch.allclose(lhs, rhs, rtol=1e-5, atol=1e-5), (lhs, rhs)


def test_skimage_back_projection_is_not_the_adjoint() -> None:
    """Negative control: iradon without a filter, even rescaled to the best constant, fails the adjoint test."""
    from skimage.transform import iradon

    n, theta = 16, sparse_view_angles(9)
    op = RadonOperator(theta, (1, n, n))
    g = torch.Generator().manual_seed(2)
    ratios = []
    for _ in range(2):
        x = torch.randn((1, 1, n, n), generator=g, dtype=torch.float64)
        y = torch.randn((1, 1, n, 9), generator=g, dtype=torch.float64)
        bp = iradon(y[0, 0].numpy(), theta=theta, filter_name=None, circle=True, output_size=n)
        ratios.append(float(inner(op.A(x), y)) / float((x[0, 0].numpy() * bp).sum()))
    assert abs(ratios[0] - ratios[1]) / abs(ratios[0]) > 1e-3  # no single scale makes it the adjoint


def test_radon_matches_skimage() -> None:
    from skimage.transform import radon

    n, theta = 21, sparse_view_angles(11)
    x = np.random.default_rng(0).random((n, n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = radon(x, theta=theta, circle=True)
    got = RadonOperator(theta, (1, n, n)).A(torch.tensor(x)[None, None].float())[0, 0].numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_fbp_recovers_a_disc_from_many_views() -> None:
    n = 32
    yy, xx = np.mgrid[:n, :n]
    disc = torch.tensor(((yy - 15) ** 2 + (xx - 16) ** 2 < 64).astype(np.float32))[None, None]
    theta = sparse_view_angles(60)
    rec = filtered_back_projection(RadonOperator(theta, (1, n, n)).A(disc), theta)
    assert float((rec - disc).abs().mean()) < 0.08


@pytest.mark.parametrize("name", ["identity", "mask", "downsample", "blur", "fourier", "radon"])
def test_pinv_is_a_least_squares_solution(name: str) -> None:
    """A A^+ y = y for y in the range of A (all our operators are onto their measured values or nearly)."""
    op = _operators()[name]
    g = torch.Generator().manual_seed(3)
    x = torch.randn((2, *EVENT), generator=g)
    y = op.A(x)
    back = op.A(op.pinv(y, iterations=400)) if name == "radon" else op.A(op.pinv(y))
    rel = float((back - y).abs().norm() / y.abs().norm())
    assert rel < (0.02 if name in ("blur", "radon") else 1e-5), rel


def test_mask_pinv_keeps_known_pixels_and_zeroes_the_rest() -> None:
    op = MaskOperator(_mask(), EVENT)
    x = torch.randn((1, *EVENT))
    rec = op.pinv(op.A(x))
    m = op.mask.bool()
    assert torch.equal(rec[0][m], x[0][m]) and bool((rec[0][~m] == 0).all())


def test_kspace_mask_is_conjugate_symmetric_and_the_zero_filled_image_is_real_projection() -> None:
    mask = cartesian_kspace_mask(
        16, 16, acceleration=4, center_fraction=0.1, generator=torch.Generator().manual_seed(0)
    )
    assert 0.2 <= float(mask.mean()) <= 0.4
    op = FourierOperator(mask, (1, 16, 16))
    assert torch.equal(op.mask, mask)
    x = torch.randn((1, 1, 16, 16), dtype=torch.float64)
    p = op.A_T(op.A(x))
    assert torch.allclose(op.A_T(op.A(p)), p, atol=1e-10)  # A^T A is idempotent: a projection


def test_noise_model_draws_the_stated_std() -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.zeros((200, *EVENT))
    for op in (DownsampleOperator(2, EVENT, 0.3), FourierOperator(_kmask(), EVENT, 0.3)):
        y = op.measure(x, generator=g)
        values = torch.view_as_real(y[y != 0]) if y.is_complex() else y
        assert abs(float(values.std()) - 0.3) < 0.01


def _kmask() -> torch.Tensor:
    return cartesian_kspace_mask(12, 12, acceleration=2, generator=torch.Generator().manual_seed(0))


def test_bad_input_is_refused_with_what_to_fix() -> None:
    with pytest.raises(DiffsightError, match="hides nothing"):
        MaskOperator(torch.ones(12, 12), EVENT)
    with pytest.raises(DiffsightError, match="hides every pixel"):
        MaskOperator(torch.zeros(12, 12), EVENT)
    with pytest.raises(ShapeError, match="mask has shape"):
        MaskOperator(torch.ones(8, 8), EVENT)
    with pytest.raises(ShapeError, match="not divisible"):
        DownsampleOperator(5, EVENT)
    with pytest.raises(DiffsightError, match="samples every frequency"):
        FourierOperator(torch.ones(12, 12), EVENT)
    with pytest.raises(ShapeError, match="square"):
        RadonOperator([0.0, 90.0], (1, 12, 10))
    with pytest.raises(ShapeError, match="model's image size"):
        MaskOperator(_mask(), EVENT).A(torch.zeros(1, 2, 8, 8))
    with pytest.raises(DiffsightError, match="noise_sigma"):
        IdentityOperator(EVENT, -1.0)


@pytest.mark.parametrize("name", ["identity", "mask", "downsample", "blur", "fourier"])
def test_damped_closed_forms_match_conjugate_gradients(name: str) -> None:
    """pinv(y, damping=d) = A^T (A A^T + d I)^-1 y: each closed form equals the base class's CG solution."""
    from diffsight.tasks.operators import LinearOperator

    op = _operators()[name]
    y = _random_measurement(op, 2, torch.Generator().manual_seed(5))
    closed = op.pinv(y, damping=0.3)
    cg = LinearOperator.pinv(op, y, damping=0.3, iterations=300, tol=1e-12)  # type: ignore[arg-type]
    assert torch.allclose(closed, cg, atol=1e-6), float((closed - cg).abs().max())
