"""CT demo pieces: the phantoms, the Gaussian prior fitted to them, and a small sparse-view reconstruction."""

from __future__ import annotations

import pytest
import torch

from diffsight.errors import DiffsightError
from diffsight.tasks.baselines import baseline_reconstruction, psnr
from diffsight.tasks.phantoms import gaussian_prior, random_ellipse_phantoms, shepp_logan
from diffsight.tasks.posterior import reconstruct
from diffsight.tasks.radon import RadonOperator, sparse_view_angles

pytestmark = pytest.mark.usefixtures("one_thread")


def test_phantoms_are_seeded_in_range_and_zero_outside_the_circle() -> None:
    a, b = random_ellipse_phantoms(6, 16, seed=3), random_ellipse_phantoms(6, 16, seed=3)
    assert torch.equal(a, b) and a.shape == (6, 1, 16, 16)
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    yy, xx = torch.meshgrid(torch.arange(16) - 7.5, torch.arange(16) - 7.5, indexing="ij")
    assert float(a[:, :, (yy**2 + xx**2) > 8**2].abs().max()) == 0
    sl = shepp_logan(16)
    assert sl.shape == (1, 1, 16, 16) and 0 <= float(sl.min()) and float(sl.max()) <= 1
    with pytest.raises(DiffsightError):
        random_ellipse_phantoms(0, 16)


@pytest.mark.slow
def test_prior_beats_filtered_back_projection_from_few_views() -> None:
    n = 32
    prior = gaussian_prior(random_ellipse_phantoms(2000, n, seed=0))
    truth = shepp_logan(n).double()
    op = RadonOperator(sparse_view_angles(8), (1, n, n), noise_sigma=0.05)
    y = op.measure(truth, generator=torch.Generator().manual_seed(0))
    fbp = baseline_reconstruction(op, y).clamp(0, 1).double()
    rec = reconstruct(
        prior, op, y, method="projection", samples=4, generator=torch.Generator().manual_seed(1), steps=20
    )
    assert psnr(rec.mean.clamp(0, 1), truth, data_range=1) > psnr(fbp, truth, data_range=1) + 0.5
