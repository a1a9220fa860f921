"""PNG grids of images in [-1, 1]: pixel size, value mapping, layout, modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from diffsight.data.image_io import save_grid, to_uint8


def _load(path) -> tuple[np.ndarray, str]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image), image.mode


def test_to_uint8_maps_range_and_layout():
    x = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0, -3.0, 7.0, 1 / 127.5 - 1]).reshape(1, 1, 2, 4)
    out = to_uint8(x)
    assert out.dtype == np.uint8 and out.shape == (1, 2, 4, 1)
    # -1 -> 0, 1 -> 255, 0 -> 127.5 rounds (half to even) to 128, values outside [-1, 1] clamp
    assert out[0, :, :, 0].tolist() == [[0, 64, 128, 191], [255, 0, 255, 1]]


def test_to_uint8_moves_channels_last():
    x = torch.zeros(2, 3, 4, 5)
    x[:, 0] = 1.0  # red channel full
    x[:, 2] = -1.0  # blue channel empty
    out = to_uint8(x)
    assert out.shape == (2, 4, 5, 3)
    assert (out[..., 0] == 255).all() and (out[..., 1] == 128).all() and (out[..., 2] == 0).all()


def test_to_uint8_accepts_grad_and_float64():
    x = torch.zeros(1, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    assert (to_uint8(x) == 128).all()


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(("n", "nrow", "rows"), [(6, 3, 2), (6, None, 2), (5, 2, 3), (1, None, 1), (4, 4, 1)])
def test_pixel_size_and_mode(tmp_path, channels, n, nrow, rows):
    h, w, pad, scale = 8, 6, 1, 4
    images = torch.zeros(n, channels, h, w)
    path = save_grid(images, tmp_path / "grid.png", nrow=nrow, scale=scale, pad=pad)
    pixels, mode = _load(path)
    cols = nrow or int(np.ceil(np.sqrt(n)))
    height, width = (rows * (h + pad) + pad) * scale, (cols * (w + pad) + pad) * scale
    assert mode == ("L" if channels == 1 else "RGB")
    assert pixels.shape == ((height, width) if channels == 1 else (height, width, 3))


def test_values_map_and_tiles_land_in_place(tmp_path):
    """Tile i sits at row i // nrow, column i % nrow, inside a white 1-pixel frame; -1 -> 0 and 1 -> 255."""
    n, h, w = 5, 3, 4
    images = torch.stack([torch.full((1, h, w), -1.0 + 0.5 * i) for i in range(n)])  # -1, -0.5, 0, 0.5, 1
    images[4, 0, 0, 0] = -1.0  # one black pixel in the last (white) tile, to see orientation
    pixels, _ = _load(save_grid(images, tmp_path / "g.png", nrow=2, scale=1, pad=1))
    assert pixels.shape == (3 * (h + 1) + 1, 2 * (w + 1) + 1)
    expected = [0, 64, 128, 191, 255]
    for i in range(n):
        r, c = divmod(i, 2)
        tile = pixels[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + c * (w + 1) : 1 + c * (w + 1) + w]
        if i == 4:
            assert tile[0, 0] == 0
            tile = tile.copy()
            tile[0, 0] = 255
        assert (tile == expected[i]).all(), i
    # the frame and the empty sixth cell are white
    assert (pixels[0] == 255).all() and (pixels[:, 0] == 255).all()
    assert (pixels[1 + 2 * (h + 1) : 1 + 2 * (h + 1) + h, 1 + (w + 1) : 1 + (w + 1) + w] == 255).all()


def test_rgb_colours_survive(tmp_path):
    images = -torch.ones(2, 3, 2, 2)
    images[0, 0] = 1.0  # red tile
    images[1, 1] = 1.0  # green tile
    pixels, mode = _load(save_grid(images, tmp_path / "rgb.png", nrow=2, scale=1, pad=0))
    assert mode == "RGB" and pixels.shape == (2, 4, 3)
    assert (pixels[:, :2] == [255, 0, 0]).all()
    assert (pixels[:, 2:] == [0, 255, 0]).all()


def test_scale_repeats_pixels(tmp_path):
    images = torch.tensor([[[[-1.0, 1.0]]]])  # one 1x2 image: black, white
    pixels, _ = _load(save_grid(images, tmp_path / "s.png", scale=3, pad=0))
    assert pixels.shape == (3, 6)
    assert (pixels[:, :3] == 0).all() and (pixels[:, 3:] == 255).all()


def test_creates_parents_overwrites_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "a" / "b" / "grid.png"
    assert save_grid(torch.zeros(1, 1, 2, 2), target) == target
    save_grid(torch.ones(4, 3, 2, 2), target)  # overwrite with another mode and size
    pixels, mode = _load(target)
    assert mode == "RGB" and (pixels[4:8, 4:8] == 255).all()
    assert [p.name for p in target.parent.iterdir()] == ["grid.png"]


def test_accepts_a_string_path(tmp_path):
    path = save_grid(torch.zeros(1, 1, 2, 2), str(tmp_path / "str.png"))
    assert path == tmp_path / "str.png" and path.is_file()
