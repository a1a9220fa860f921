"""Uniform dequantisation and discrete bits/dim against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from diffsight.errors import DiffsightError
from diffsight.sampling.dequantize import bin_width, bits_per_dim, to_levels, uniform_dequantize

pytestmark = pytest.mark.usefixtures("one_thread")


def test_bin_width_matches_the_data_grids() -> None:
    assert bin_width(256) == pytest.approx(1 / 127.5)  # 8-bit images, k / 127.5 - 1
    assert bin_width(17) == 0.125  # sklearn digits, k / 8 - 1
    assert bin_width(256, (0.0, 255.0)) == 1.0


def test_bits_per_dim_hand_computation() -> None:
    # 8-bit on [-1, 1]: nll 100 nats over 64 values -> 100 / (64 ln 2) + log2(127.5)
    expected = 100 / (64 * 0.6931471805599453) + 6.994353436858858
    assert bits_per_dim(100.0, 64) == pytest.approx(expected, abs=1e-12)
    # digits: + log2(8) = 3 bits per dimension
    assert bits_per_dim(0.0, 64, levels=17) == pytest.approx(3.0, abs=1e-12)
    # integer-valued data (bins of width 1): no offset, plain nats -> bits
    assert bits_per_dim(10.0, 5, levels=256, value_range=(0.0, 255.0)) == pytest.approx(2 / math.log(2))
    # tensors in, tensors out
    out = bits_per_dim(torch.tensor([0.0, 64 * math.log(2)], dtype=torch.float64), 64, levels=17)
    assert torch.allclose(out, torch.tensor([3.0, 4.0], dtype=torch.float64))


def test_uniform_density_over_all_bins_gives_log2_levels() -> None:
    """A uniform density over the union of the bins (volume (levels * delta)^d) is the uniform discrete model:
    exactly log2(levels) bits per dimension. A wrong sign of the offset would give log2(levels) - 2 log2(1/delta)."""
    for levels, vr in ((17, (-1.0, 1.0)), (256, (-1.0, 1.0)), (4, (0.0, 3.0))):
        d = 10
        nll = d * math.log(levels * bin_width(levels, vr))
        assert bits_per_dim(nll, d, levels=levels, value_range=vr) == pytest.approx(math.log2(levels), abs=1e-12)


def test_dequantized_values_stay_in_their_bin_and_are_reproducible() -> None:
    from diffsight.data import load_data

    x = load_data("digits").samples[:50]  # (50, 1, 8, 8) values k / 8 - 1
    k = to_levels(x, levels=17)
    assert torch.equal(k, (x * 8 + 8).round().long()) and int(k.min()) == 0 and int(k.max()) == 16
    a = uniform_dequantize(x, levels=17, generator=torch.Generator().manual_seed(3))
    b = uniform_dequantize(x, levels=17, generator=torch.Generator().manual_seed(3))
    c = uniform_dequantize(x, levels=17, generator=torch.Generator().manual_seed(4))
    assert a.dtype == x.dtype and a.shape == x.shape
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert bool((a >= x).all()) and bool((a < x + 0.125).all())
    offset = (a.double() - x.double()) / 0.125  # u in level units: uniform on [0, 1)
    assert abs(offset.mean().item() - 0.5) < 0.02 and abs(offset.var().item() - 1 / 12) < 0.005
    centred = uniform_dequantize(x, levels=17, generator=torch.Generator().manual_seed(3), centered=True)
    assert torch.allclose(centred, a - 0.0625, atol=1e-6)


def test_float32_8bit_values_never_reach_the_next_bin() -> None:
    k = torch.arange(256, dtype=torch.float32).repeat(400)  # every level many times
    x = k / 127.5 - 1
    xt = uniform_dequantize(x, generator=torch.Generator().manual_seed(0))
    upper = (k.double() + 1) / 127.5 - 1
    assert bool((xt.double() >= x.double()).all()) and bool((xt.double() < upper.to(torch.float32).double()).all())


def test_off_grid_data_is_refused() -> None:
    from diffsight.data import load_data

    x = load_data("digits").samples[:4]
    with pytest.raises(DiffsightError, match="17"):
        uniform_dequantize(x)  # digits are not 8-bit data: levels=256 is wrong
    with pytest.raises(DiffsightError, match="outside"):
        uniform_dequantize(x, levels=17, value_range=(0.0, 1.0))
    with pytest.raises(DiffsightError, match="levels"):
        bin_width(1)
    with pytest.raises(DiffsightError, match="dims"):
        bits_per_dim(1.0, 0)
