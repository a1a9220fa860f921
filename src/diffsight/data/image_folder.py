"""A folder of the user's own PNG/JPEG images, with classes taken from its sub-folders.

The folder is read recursively in a sorted, deterministic order. When every image lies inside a first-level
sub-folder, the sub-folder names are the classes (``cats/001.png`` has class ``cats``); when any image lies
directly in the folder itself, the data is unlabelled. Images come back as float32 (N, C, H, W) in [-1, 1].

Reading happens in two passes: the first only opens each file's header (mode and size) so that mixed channel
counts, differing sizes and too-small images are reported before anything is decoded; the second decodes,
crops and resizes. Nothing is ever upsampled.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from diffsight.data.dataset import TrainingData
from diffsight.errors import DiffsightError

__all__ = ["CROPS", "IMAGE_EXTENSIONS", "load_image_files", "load_image_folder"]

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg")
CROPS: tuple[str, ...] = ("center", "none")
_PROGRESS_ABOVE = 2000  # show a progress bar only for folders with more files than this
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_WIDE_GRAY_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})  # more than 8 bits: scaled by 1/65535
# Pillow raises a zoo of exceptions on broken files; these are the ones that mean "cannot read this image".
_READ_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


@dataclass(frozen=True)
class _Header:
    """What the first pass learns about one file without decoding its pixels."""

    path: Path
    mode: str
    width: int
    height: int

    @property
    def gray(self) -> bool:
        return self.mode in _GRAY_MODES

    @property
    def size_text(self) -> str:
        return f"{self.width}x{self.height}"


def load_image_folder(
    path: str | Path,
    *,
    resolution: int | None = None,
    channels: int | None = None,
    crop: str = "center",
) -> TrainingData:
    """Read every PNG/JPEG image under ``path`` into one (N, C, H, W) float32 tensor in [-1, 1].

    Args:
        path: a folder; images are found recursively (``.png``, ``.jpg``, ``.jpeg``, any case). Hidden files and
            folders (names starting with ``.``) are skipped.
        resolution: side length of the square output. ``None`` keeps the images' own size, which must then be the
            same for every file (non-square images are centre-cropped to their shorter side).
        channels: 1 (grayscale) or 3 (RGB). ``None`` uses what the files hold and refuses a mix of both.
            RGBA and palette images count as RGB (the alpha channel is dropped); 16-bit grayscale is scaled
            from its full 0..65535 range.
        crop: ``"center"`` scales the shorter side to ``resolution`` and keeps the central square;
            ``"none"`` scales both sides to ``resolution``, changing the aspect ratio.

    Raises:
        DiffsightError: the folder is missing or holds no images, a file cannot be read, the channel counts or
            sizes do not agree (and no ``channels`` / ``resolution`` settles it), or an image is smaller than
            ``resolution``. Every message says what to change.
    """
    _check_options(resolution, channels, crop)
    root = _check_folder(path)
    files = _find_images(root)
    class_of = _classes(root, files)
    headers = [_read_header(f) for f in _progress(files, "Checking images")]

    channels = channels if channels is not None else _common_channels(root, headers)
    side = _check_sizes(root, headers, resolution)
    samples = _read_all(headers, channels, side, crop, resize=resolution is not None)

    labels: torch.Tensor | None = None
    class_names: tuple[str, ...] = ()
    if class_of is not None:
        class_names = tuple(sorted(set(class_of)))
        index = {name: i for i, name in enumerate(class_names)}
        labels = torch.tensor([index[name] for name in class_of], dtype=torch.int64)  # (N,)
    return TrainingData(
        name=str(path),
        samples=samples,
        labels=labels,
        class_names=class_names,
        source={
            "origin": "image folder",
            "path": str(root),
            "files": len(files),
            "resolution": side,
            "channels": channels,
            "crop": crop,
        },
    )


def load_image_files(
    files: Sequence[str | Path], *, resolution: int, channels: int, crop: str = "center"
) -> torch.Tensor:
    """Read the given PNG/JPEG files into (N, channels, resolution, resolution) in [-1, 1], with the same checks
    and conversions as :func:`load_image_folder` (for inputs handed to a model, e.g. ``diffsight score``)."""
    _check_options(resolution, channels, crop)
    paths = [Path(f) for f in files]
    for path in paths:
        if not path.is_file():
            raise DiffsightError(f"{path} not found: pass existing PNG/JPEG files, a folder, or a dataset name")
    headers = [_read_header(path) for path in paths]
    _check_sizes(paths[0].parent if paths else Path("."), headers, resolution)
    return _read_all(headers, channels, resolution, crop, resize=True)


def _read_all(headers: Sequence[_Header], channels: int, side: int, crop: str, *, resize: bool) -> torch.Tensor:
    images = np.empty((len(headers), channels, side, side), dtype=np.float32)  # (N, C, H, W) in [0, 1]
    for i, header in enumerate(_progress(headers, "Reading images")):
        images[i] = _read_pixels(header, channels, side, crop, resize=resize)
    images *= 2.0
    images -= 1.0  # in place: (N, C, H, W) in [-1, 1]
    return torch.from_numpy(images)


def _check_options(resolution: int | None, channels: int | None, crop: str) -> None:
    if crop not in CROPS:
        raise DiffsightError(f"unknown crop {crop!r}; choose one of: {', '.join(CROPS)}")
    if channels is not None and (isinstance(channels, bool) or channels not in (1, 3)):
        raise DiffsightError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    if resolution is not None and (
        isinstance(resolution, bool) or not isinstance(resolution, int | np.integer) or resolution < 1
    ):
        raise DiffsightError(f"resolution must be a positive integer (pixels per side), got {resolution!r}")


def _check_folder(path: str | Path) -> Path:
    folder = Path(path).expanduser()
    if not folder.exists():
        raise DiffsightError(f"{folder}: no such folder; check the path to your images")
    if not folder.is_dir():
        raise DiffsightError(f"{folder}: not a folder; pass a folder that holds PNG/JPEG images")
    return folder.resolve()


def _find_images(root: Path) -> list[Path]:
    """Image files under ``root`` in sorted order of their relative path, hidden names skipped."""
    found: list[Path] = []
    others = 0
    for file in root.rglob("*"):
        rel = file.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not file.is_file():
            continue
        if file.suffix.lower() in IMAGE_EXTENSIONS:
            found.append(file)
        else:
            others += 1
    if not found:
        extra = f" (it holds {others} other file(s))" if others else ""
        raise DiffsightError(
            f"{root}: no images found{extra}; looked recursively for {', '.join(IMAGE_EXTENSIONS)} files "
            "(any case). Put PNG/JPEG images in the folder, or in one sub-folder per class"
        )
    return sorted(found, key=lambda f: f.relative_to(root).as_posix())


def _classes(root: Path, files: Sequence[Path]) -> list[str] | None:
    """The first-level sub-folder of each file, or None when any file lies directly in ``root``."""
    parts = [f.relative_to(root).parts for f in files]
    if any(len(p) < 2 for p in parts):
        return None
    return [p[0] for p in parts]


def _progress(items: Sequence[object], description: str) -> Iterable:
    if len(items) <= _PROGRESS_ABOVE:
        return items
    from rich.progress import track

    return track(items, description=description, transient=True)


def _unreadable(file: Path, error: BaseException) -> DiffsightError:
    return DiffsightError(
        f"{file}: cannot read this image ({type(error).__name__}: {error}); "
        "the file is corrupt, truncated or not really a PNG/JPEG. Re-export it or remove it from the folder"
    )


def _read_header(file: Path) -> _Header:
    try:
        with Image.open(file) as img:  # lazy: reads the header only
            return _Header(file, img.mode, *img.size)
    except _READ_ERRORS as error:
        raise _unreadable(file, error) from error


def _common_channels(root: Path, headers: Sequence[_Header]) -> int:
    gray = next((h for h in headers if h.gray), None)
    colour = next((h for h in headers if not h.gray), None)
    if gray is not None and colour is not None:
        raise DiffsightError(
            f"{root}: the images mix grayscale and colour, e.g. {gray.path} is grayscale "
            f"(mode {gray.mode}) and {colour.path} is colour (mode {colour.mode}); "
            "pass channels=1 to convert all to grayscale or channels=3 for RGB (--channels 1 / --channels 3)"
        )
    return 1 if gray is not None else 3


def _check_sizes(root: Path, headers: Sequence[_Header], resolution: int | None) -> int:
    """The output side length; refuses too-small images, and differing sizes when ``resolution`` is None."""
    if resolution is None:
        first = headers[0]
        other = next((h for h in headers if (h.width, h.height) != (first.width, first.height)), None)
        if other is not None:
            raise DiffsightError(
                f"{root}: the images differ in size, e.g. {first.path} is {first.size_text} and "
                f"{other.path} is {other.size_text}; pass resolution=N (--resolution N) to resize "
                "them all to N x N"
            )
        return min(first.width, first.height)
    for h in headers:
        if min(h.width, h.height) < resolution:
            raise DiffsightError(
                f"{h.path} is {h.size_text}, smaller than the resolution {resolution} "
                f"(images are never upsampled); lower --resolution to at most {min(h.width, h.height)} "
                "or remove the image"
            )
    return resolution


def _read_pixels(header: _Header, channels: int, side: int, crop: str, *, resize: bool) -> np.ndarray:
    """One image as (C, side, side) float32 in [0, 1]."""
    try:
        with Image.open(header.path) as opened:
            opened.load()  # decode now, so that a truncated file fails here and not later
            img = _canonical(opened, channels)
    except _READ_ERRORS as error:
        raise _unreadable(header.path, error) from error

    width, height = img.size
    if crop == "center" or not resize:
        short = min(width, height)
        left, top = (width - short) // 2, (height - short) // 2
        if (width, height) != (short, short):
            img = img.crop((left, top, left + short, top + short))
    if img.size != (side, side):
        img = img.resize((side, side), Image.Resampling.LANCZOS)  # Pillow widens the kernel when shrinking

    if img.mode == "F":  # wide grayscale, already scaled to [0, 1]; Lanczos may overshoot slightly
        pixels = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)[None]  # (1, H, W)
        return np.repeat(pixels, channels, axis=0)  # (C, H, W)
    pixels = np.asarray(img, dtype=np.float32) / 255.0  # (H, W) or (H, W, 3)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)  # (C, H, W)


def _canonical(img: Image.Image, channels: int) -> Image.Image:
    """``img`` as mode "L" or "RGB" (8-bit), or "F" scaled to [0, 1] for more-than-8-bit grayscale."""
    if img.mode in _WIDE_GRAY_MODES:
        values = np.asarray(img, dtype=np.float32) / 65535.0  # (H, W), 16-bit range
        return Image.fromarray(np.clip(values, 0.0, 1.0).astype(np.float32))  # mode "F"
    return img.convert("L" if channels == 1 else "RGB")
