"""Image folders: layouts, classes, channels, cropping and resizing, and errors that say what to fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffsight.data import image_folder
from diffsight.data.image_folder import load_image_folder
from diffsight.errors import DiffsightError


def save(path: Path, pixels: np.ndarray, mode: str | None = None) -> Path:
    """Write ``pixels`` (H, W) or (H, W, C) as an image file, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(pixels)
    if mode is not None:
        img = img.convert(mode)
    img.save(path)
    return path


def gray(value: int, size: tuple[int, int] = (8, 8)) -> np.ndarray:
    """A flat grayscale image, size (width, height)."""
    return np.full((size[1], size[0]), value, dtype=np.uint8)


def rgb(colour: tuple[int, int, int], size: tuple[int, int] = (8, 8)) -> np.ndarray:
    """A flat RGB image, size (width, height)."""
    return np.broadcast_to(np.array(colour, dtype=np.uint8), (size[1], size[0], 3)).copy()


# --- layouts and classes ---------------------------------------------------------------------------------------


def test_grayscale_pngs_in_the_root_are_unlabelled_and_scaled(tmp_path: Path) -> None:
    save(tmp_path / "b.png", gray(255))
    save(tmp_path / "a.png", gray(0))
    save(tmp_path / "c.png", gray(51))
    data = load_image_folder(tmp_path)
    assert data.samples.shape == (3, 1, 8, 8)
    assert data.samples.dtype == torch.float32
    assert data.labels is None and data.class_names == ()
    # sorted order a, b, c; pixel / 255 * 2 - 1
    expected = torch.tensor([-1.0, 1.0, 51 / 255 * 2 - 1])
    torch.testing.assert_close(data.samples.mean(dim=(1, 2, 3)), expected)
    assert data.name == str(tmp_path)
    assert data.source == {
        "origin": "image folder",
        "path": str(tmp_path.resolve()),
        "files": 3,
        "resolution": 8,
        "channels": 1,
        "crop": "center",
    }


def test_class_sub_folders_give_sorted_class_names_and_int64_labels(tmp_path: Path) -> None:
    save(tmp_path / "dogs" / "1.jpg", rgb((0, 0, 255)))
    save(tmp_path / "cats" / "2.jpg", rgb((255, 0, 0)))
    save(tmp_path / "cats" / "1.jpg", rgb((255, 0, 0)))
    save(tmp_path / "dogs" / "deeper" / "0.jpg", rgb((0, 0, 255)))  # belongs to its first-level folder
    data = load_image_folder(tmp_path)
    assert data.samples.shape == (4, 3, 8, 8)
    assert data.class_names == ("cats", "dogs")
    assert data.labels is not None and data.labels.dtype == torch.int64
    assert data.labels.tolist() == [0, 0, 1, 1]
    red = data.samples[:, 0].mean(dim=(1, 2))  # JPEG is lossy: compare loosely
    assert (red[:2] > 0.9).all() and (red[2:] < -0.9).all()


def test_images_in_root_and_sub_folders_are_unlabelled(tmp_path: Path) -> None:
    save(tmp_path / "top.png", gray(10))
    save(tmp_path / "cls" / "x.png", gray(20))
    data = load_image_folder(tmp_path)
    assert len(data) == 2
    assert data.labels is None


def test_extensions_are_case_insensitive_and_other_files_are_skipped(tmp_path: Path) -> None:
    save(tmp_path / "a.PNG", gray(0))
    save(tmp_path / "b.JPG", gray(0))
    save(tmp_path / "c.jpeg", gray(0))
    save(tmp_path / "d.bmp", gray(0))  # not a PNG/JPEG
    save(tmp_path / ".hidden.png", gray(0))
    save(tmp_path / ".cache" / "e.png", gray(0))
    (tmp_path / "notes.txt").write_text("not an image")
    data = load_image_folder(tmp_path)
    assert data.source["files"] == 3


def test_loading_is_deterministic(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(5):
        save(tmp_path / f"k{i % 2}" / f"{i}.png", rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
    a, b = load_image_folder(tmp_path), load_image_folder(tmp_path)
    assert torch.equal(a.samples, b.samples)
    assert a.fingerprint() == b.fingerprint()


# --- channels --------------------------------------------------------------------------------------------------


def test_channels_convert_between_grayscale_and_rgb(tmp_path: Path) -> None:
    save(tmp_path / "a.png", rgb((255, 0, 0)))
    one = load_image_folder(tmp_path, channels=1)
    assert one.samples.shape == (1, 1, 8, 8)
    luma = round(0.299 * 255) / 255 * 2 - 1  # ITU-R 601 weights of pure red
    assert abs(float(one.samples.mean()) - luma) < 0.01

    save(tmp_path / "a.png", gray(100))
    three = load_image_folder(tmp_path, channels=3)
    assert three.samples.shape == (1, 3, 8, 8)
    assert torch.equal(three.samples[:, 0], three.samples[:, 1])
    assert torch.equal(three.samples[:, 0], three.samples[:, 2])


def test_mixed_grayscale_and_rgb_needs_channels(tmp_path: Path) -> None:
    save(tmp_path / "gray.png", gray(0))
    save(tmp_path / "colour.png", rgb((0, 255, 0)))
    with pytest.raises(DiffsightError) as info:
        load_image_folder(tmp_path)
    message = str(info.value)
    assert "gray.png" in message and "colour.png" in message
    assert "channels=1" in message and "channels=3" in message and "--channels" in message
    assert load_image_folder(tmp_path, channels=3).samples.shape == (2, 3, 8, 8)
    assert load_image_folder(tmp_path, channels=1).samples.shape == (2, 1, 8, 8)


def test_rgba_and_palette_images_count_as_rgb(tmp_path: Path) -> None:
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 2] = 255  # blue, fully transparent: the alpha channel is dropped
    save(tmp_path / "a.png", rgba)
    save(tmp_path / "b.png", rgb((0, 0, 255)), mode="P")
    data = load_image_folder(tmp_path)
    assert data.samples.shape == (2, 3, 8, 8)
    torch.testing.assert_close(data.samples[:, 2], torch.ones(2, 8, 8))
    torch.testing.assert_close(data.samples[:, :2], -torch.ones(2, 2, 8, 8))


def test_16_bit_grayscale_uses_its_full_range(tmp_path: Path) -> None:
    for name, value in (("a", 0), ("b", 65535), ("c", 32768)):
        save(tmp_path / f"{name}.png", np.full((8, 8), value, dtype=np.uint16))
    with Image.open(tmp_path / "b.png") as img:
        assert img.mode.startswith("I")  # really 16-bit on disk
    for channels in (None, 3):
        data = load_image_folder(tmp_path, channels=channels)
        means = data.samples.mean(dim=(1, 2, 3))
        torch.testing.assert_close(means, torch.tensor([-1.0, 1.0, 32768 / 65535 * 2 - 1]))
    resized = load_image_folder(tmp_path, resolution=4)  # the float path through the resizer
    torch.testing.assert_close(resized.samples.mean(dim=(1, 2, 3)), means, atol=1e-5, rtol=0)


@pytest.mark.parametrize("channels", [2, 4, True])
def test_bad_channels_are_refused(tmp_path: Path, channels: int) -> None:
    save(tmp_path / "a.png", gray(0))
    with pytest.raises(DiffsightError, match="channels must be 1"):
        load_image_folder(tmp_path, channels=channels)


# --- sizes, cropping and resizing ------------------------------------------------------------------------------


def wide_image() -> np.ndarray:
    """60 wide x 20 high: black left and right thirds, a white central 20x20 square."""
    pixels = np.zeros((20, 60), dtype=np.uint8)
    pixels[:, 20:40] = 255
    return pixels


def test_center_crop_keeps_the_central_square(tmp_path: Path) -> None:
    save(tmp_path / "a.png", wide_image())
    data = load_image_folder(tmp_path, resolution=10, crop="center")
    assert data.samples.shape == (1, 1, 10, 10)
    torch.testing.assert_close(data.samples, torch.ones(1, 1, 10, 10))
    assert data.source["resolution"] == 10 and data.source["crop"] == "center"


def test_crop_none_squeezes_the_whole_image(tmp_path: Path) -> None:
    save(tmp_path / "a.png", wide_image())
    data = load_image_folder(tmp_path, resolution=9, crop="none")
    assert data.samples.shape == (1, 1, 9, 9)
    columns = data.samples[0, 0].mean(dim=0)  # (W,)
    assert (columns[:2] < -0.9).all() and (columns[-2:] < -0.9).all()  # the black thirds are still there
    assert (columns[4] > 0.9).all()


def test_resolution_none_center_crops_non_square_images(tmp_path: Path) -> None:
    save(tmp_path / "a.png", wide_image())
    save(tmp_path / "b.png", wide_image())
    data = load_image_folder(tmp_path)
    assert data.samples.shape == (2, 1, 20, 20)
    torch.testing.assert_close(data.samples, torch.ones(2, 1, 20, 20))


def test_downsampling_is_antialiased(tmp_path: Path) -> None:
    checker = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)  # 1-pixel black/white checkerboard
    save(tmp_path / "a.png", checker)
    data = load_image_folder(tmp_path, resolution=16)
    assert float(data.samples.abs().max()) < 0.1  # averages to mid-grey instead of aliasing to black or white


def test_differing_sizes_need_resolution(tmp_path: Path) -> None:
    save(tmp_path / "small.png", gray(0, (8, 8)))
    save(tmp_path / "big.png", gray(0, (12, 10)))
    with pytest.raises(DiffsightError) as info:
        load_image_folder(tmp_path)
    message = str(info.value)
    assert "small.png" in message and "big.png" in message and "12x10" in message
    assert "resolution" in message
    assert load_image_folder(tmp_path, resolution=8).samples.shape == (2, 1, 8, 8)


def test_too_small_image_names_the_file_and_says_lower_resolution(tmp_path: Path) -> None:
    save(tmp_path / "ok.png", gray(0, (32, 32)))
    save(tmp_path / "tiny.png", gray(0, (20, 12)))
    with pytest.raises(DiffsightError) as info:
        load_image_folder(tmp_path, resolution=16)
    message = str(info.value)
    assert "tiny.png" in message and "20x12" in message
    assert "--resolution" in message and "12" in message


@pytest.mark.parametrize("resolution", [0, -4, 2.5])
def test_bad_resolution_is_refused(tmp_path: Path, resolution: int) -> None:
    save(tmp_path / "a.png", gray(0))
    with pytest.raises(DiffsightError, match="positive integer"):
        load_image_folder(tmp_path, resolution=resolution)


def test_unknown_crop_lists_the_choices(tmp_path: Path) -> None:
    save(tmp_path / "a.png", gray(0))
    with pytest.raises(DiffsightError) as info:
        load_image_folder(tmp_path, resolution=4, crop="random")
    message = str(info.value)
    assert "random" in message and "center" in message and "none" in message


# --- bad folders and bad files ---------------------------------------------------------------------------------


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DiffsightError, match="no such folder") as info:
        load_image_folder(tmp_path / "nowhere")
    assert "nowhere" in str(info.value)


def test_a_file_is_not_a_folder(tmp_path: Path) -> None:
    file = save(tmp_path / "a.png", gray(0))
    with pytest.raises(DiffsightError, match="not a folder"):
        load_image_folder(file)


def test_folder_without_images_says_which_extensions_were_looked_for(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(DiffsightError) as info:
        load_image_folder(tmp_path)
    message = str(info.value)
    assert "no images" in message
    for ext in (".png", ".jpg", ".jpeg"):
        assert ext in message


def test_truncated_png_is_detected_and_named(tmp_path: Path) -> None:
    save(tmp_path / "good.png", gray(0, (64, 64)))
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)  # incompressible: a long IDAT
    full = save(tmp_path / "cut.png", noise)
    raw = full.read_bytes()
    full.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DiffsightError) as info:
        load_image_folder(tmp_path)
    message = str(info.value)
    assert "cut.png" in message and "good.png" not in message
    assert "truncated" in message or "corrupt" in message


def test_text_file_named_png_is_named(tmp_path: Path) -> None:
    save(tmp_path / "good.png", gray(0))
    (tmp_path / "fake.png").write_text("this is not a picture")
    with pytest.raises(DiffsightError) as info:
        load_image_folder(tmp_path)
    message = str(info.value)
    assert "fake.png" in message and "cannot read" in message


def test_progress_bar_path_gives_the_same_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(3):
        save(tmp_path / f"{i}.png", gray(40 * i))
    quiet = load_image_folder(tmp_path)
    monkeypatch.setattr(image_folder, "_PROGRESS_ABOVE", 1)
    shown = load_image_folder(tmp_path)
    assert torch.equal(quiet.samples, shown.samples)
