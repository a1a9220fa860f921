"""UNet presets and the EDM backbone adapter: valid diffusers configs, the extra level at 16x16, the null class.

Every config is built into a real ``diffusers.UNet2DModel`` and run once, so a preset that diffusers rejects,
or one whose levels do not fit the resolution, fails here rather than at training time.
"""

from __future__ import annotations

import functools

import pytest
import torch
from diffusers import UNet2DModel

from diffsight.errors import DiffsightError, UnknownNameError
from diffsight.models import EDMPrecond
from diffsight.models.unet import C_NOISE_SCALE, UNET_PRESETS, UNetEDMBackbone, build_unet, unet_config

NUM_CLASSES = 3


pytestmark = pytest.mark.usefixtures("one_thread")


@functools.cache
def _tiny(num_classes: int = NUM_CLASSES, channels: int = 1) -> UNet2DModel:
    """A seeded tiny 8x8 UNet (weights seeded without touching the global RNG of other tests)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = build_unet(unet_config("tiny", in_channels=channels, resolution=8, num_classes=num_classes))
    return unet.eval().requires_grad_(False)


def _x(batch: int = 4, channels: int = 1, res: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, channels, res, res, generator=torch.Generator().manual_seed(seed))


def _c_noise(batch: int = 4) -> torch.Tensor:
    return torch.linspace(-1.5, 1.0, batch)  # EDM's c_noise = ln(sigma) / 4 over a typical sigma range


# --- unet_config ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", sorted(UNET_PRESETS))
@pytest.mark.parametrize(("channels", "res"), [(1, 8), (3, 8), (3, 16)])
def test_presets_build_and_run(preset, channels, res):
    cfg = unet_config(preset, in_channels=channels, resolution=res)
    unet = build_unet(cfg)
    assert isinstance(unet, UNet2DModel)
    for key, value in cfg.items():  # diffusers kept every value we asked for
        got = unet.config[key]
        assert (list(got) if isinstance(got, (list, tuple)) else got) == (
            list(value) if isinstance(value, (list, tuple)) else value
        ), key
    assert unet.config.num_class_embeds is None
    with torch.no_grad():
        out = unet(_x(2, channels, res), torch.tensor([10.0, 500.0])).sample
    assert out.shape == (2, channels, res, res)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("preset", sorted(UNET_PRESETS))
def test_16x16_adds_a_full_resolution_level(preset):
    small, large = (unet_config(preset, in_channels=3, resolution=r) for r in (8, 16))
    base = list(UNET_PRESETS[preset]["channels"])
    assert small["block_out_channels"] == base
    assert large["block_out_channels"] == [base[0], *base]
    for cfg in (small, large):
        n = len(cfg["block_out_channels"])
        assert len(cfg["down_block_types"]) == len(cfg["up_block_types"]) == n
        attn = UNET_PRESETS[preset]["attention"]
        # attention (if any) only at the lowest resolution: the last down block and the first up block
        assert cfg["down_block_types"][-1] == ("AttnDownBlock2D" if attn else "DownBlock2D")
        assert cfg["up_block_types"][0] == ("AttnUpBlock2D" if attn else "UpBlock2D")
        assert set(cfg["down_block_types"][:-1]) == {"DownBlock2D"}
        assert set(cfg["up_block_types"][1:]) == {"UpBlock2D"}


def test_28x28_keeps_odd_lowest_resolution():
    """28 -> 14 -> 7: three levels need divisibility by 4 only, and the network runs at 28x28."""
    cfg = unet_config("tiny", in_channels=1, resolution=28)
    assert len(cfg["block_out_channels"]) == 3
    with torch.no_grad():
        out = build_unet(cfg)(_x(1, 1, 28), torch.tensor([3.0])).sample
    assert out.shape == (1, 1, 28, 28)


def test_sizes_follow_presets():
    """small ~0.7 M parameters at 8x8 (the module docstring); the presets grow tiny < small < medium."""
    counts = {
        p: sum(q.numel() for q in build_unet(unet_config(p, in_channels=3, resolution=8)).parameters())
        for p in ("tiny", "small", "medium")
    }
    assert counts["tiny"] < counts["small"] < counts["medium"]
    assert 0.5e6 < counts["small"] < 0.9e6


@pytest.mark.parametrize(("res", "divisor"), [(9, 2), (18, 4), (30, 4)])
def test_resolution_not_divisible_is_refused(res, divisor):
    with pytest.raises(DiffsightError, match=rf"resolution {res} must be divisible by {divisor}"):
        unet_config("tiny", in_channels=1, resolution=res)


def test_resolution_below_4_is_refused():
    with pytest.raises(DiffsightError, match="at least 4x4"):
        unet_config("tiny", in_channels=1, resolution=2)


def test_unknown_preset_lists_choices():
    with pytest.raises(UnknownNameError, match="huge") as err:
        unet_config("huge", in_channels=1, resolution=8)
    for name in UNET_PRESETS:
        assert name in str(err.value)


@pytest.mark.parametrize("num_classes", [1, 10])
def test_num_classes_adds_a_null_row(num_classes):
    cfg = unet_config("tiny", in_channels=1, resolution=8, num_classes=num_classes)
    assert cfg["num_class_embeds"] == num_classes + 1
    unet = build_unet(cfg)
    assert unet.class_embedding.num_embeddings == num_classes + 1
    assert UNetEDMBackbone(unet).null_class == num_classes


def test_unconditional_config_has_no_class_embedding():
    cfg = unet_config("tiny", in_channels=1, resolution=8, num_classes=0)
    assert cfg["num_class_embeds"] is None
    assert UNetEDMBackbone(build_unet(cfg)).null_class is None


def test_overrides_win():
    cfg = unet_config("tiny", in_channels=1, resolution=8, overrides={"attention_head_dim": 4, "layers_per_block": 2})
    assert cfg["attention_head_dim"] == 4 and cfg["layers_per_block"] == 2
    assert build_unet(cfg).config.layers_per_block == 2


def test_config_is_a_fresh_dict():
    """Mutating a returned config must not change the preset table or later configs."""
    cfg = unet_config("tiny", in_channels=1, resolution=8)
    cfg["block_out_channels"].append(999)
    assert unet_config("tiny", in_channels=1, resolution=8)["block_out_channels"] == list(
        UNET_PRESETS["tiny"]["channels"]
    )


# --- UNetEDMBackbone --------------------------------------------------------------------------------------------


def test_backbone_output_shape_equals_input():
    backbone = UNetEDMBackbone(_tiny(channels=3))
    x = _x(4, 3)
    with torch.no_grad():
        out = backbone(x, _c_noise(), torch.tensor([0, 1, 2, 3]))
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_backbone_scales_c_noise_into_the_timestep():
    """F(x, c_noise, y) = unet(x, C_NOISE_SCALE * c_noise, class_labels=y)."""
    unet = _tiny()
    backbone = UNetEDMBackbone(unet)
    assert backbone.c_noise_scale == C_NOISE_SCALE
    x, c, y = _x(), _c_noise(), torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        ours = backbone(x, c, y)
        ref = unet(x, c * C_NOISE_SCALE, class_labels=y).sample
        unscaled = unet(x, c, class_labels=y).sample
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    assert (ours - unscaled).abs().max() > 1e-3  # the scale matters
    custom = UNetEDMBackbone(unet, c_noise_scale=10.0)
    with torch.no_grad():
        torch.testing.assert_close(custom(x, c, y), unet(x, c * 10.0, class_labels=y).sample, rtol=0, atol=0)


def test_cond_none_equals_null_class():
    backbone = UNetEDMBackbone(_tiny())
    x, c = _x(), _c_noise()
    null = torch.full((4,), NUM_CLASSES)
    with torch.no_grad():
        unconditional = backbone(x, c, None)
        explicit = backbone(x, c, null)
        as_list = backbone(x, c, null.tolist())
        labelled = backbone(x, c, torch.zeros(4, dtype=torch.long))
    torch.testing.assert_close(unconditional, explicit, rtol=0, atol=0)
    torch.testing.assert_close(unconditional, as_list, rtol=0, atol=0)
    assert (unconditional - labelled).abs().max() > 1e-4  # the label really enters


def test_labels_act_per_sample():
    """Sample i's output depends on label i only: changing one label changes one output."""
    backbone = UNetEDMBackbone(_tiny())
    x, c = _x(), _c_noise()
    y = torch.tensor([0, 1, 2, 0])
    y2 = y.clone()
    y2[2] = 1
    with torch.no_grad():
        a, b = backbone(x, c, y), backbone(x, c, y2)
    diff = (a - b).flatten(1).abs().amax(1)
    assert diff[2] > 1e-4
    assert torch.all(diff[[0, 1, 3]] < 1e-6)


@pytest.mark.parametrize("bad", [NUM_CLASSES + 1, -1, 100])
def test_labels_out_of_range_are_refused(bad):
    backbone = UNetEDMBackbone(_tiny())
    labels = torch.tensor([0, 1, bad, 0])
    with pytest.raises(DiffsightError, match=rf"0\.\.{NUM_CLASSES - 1}"):
        backbone(_x(), _c_noise(), labels)


def test_label_count_must_match_batch():
    backbone = UNetEDMBackbone(_tiny())
    with pytest.raises(DiffsightError, match="one class label per sample"):
        backbone(_x(), _c_noise(), torch.tensor([0, 1]))


def test_label_on_unconditional_unet_is_refused():
    backbone = UNetEDMBackbone(_tiny(num_classes=0))
    assert backbone.null_class is None
    with pytest.raises(DiffsightError, match="unconditional"):
        backbone(_x(), _c_noise(), torch.zeros(4, dtype=torch.long))
    with torch.no_grad():
        assert backbone(_x(), _c_noise(), None).shape == (4, 1, 8, 8)


def test_backbone_inside_edm_precond_is_a_denoiser():
    """EDMPrecond(UNetEDMBackbone(unet)) maps (x, sigma, y) to x0_hat of the same shape; at tiny sigma
    D(x) ~ x (c_skip -> 1, c_out -> 0), whatever the random network says."""
    den = EDMPrecond(UNetEDMBackbone(_tiny()), sigma_data=0.5, sigma_min=0.002, sigma_max=80.0)
    x = _x()
    with torch.no_grad():
        out = den(x, torch.tensor([0.002, 0.5, 5.0, 80.0]), torch.tensor([0, 1, 2, 3]))
        tiny_sigma = den(x, torch.full((4,), 1e-4), None)
    assert out.shape == x.shape and torch.isfinite(out).all()
    torch.testing.assert_close(tiny_sigma, x, rtol=0, atol=1e-3)
