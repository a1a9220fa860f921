"""Write a batch of images in [-1, 1] as one PNG grid (Pillow)."""

from __future__ import annotations

import base64
import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["grid_png_bytes", "heatmap_png_bytes", "png_data_uri", "save_grid", "to_uint8"]


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def _grid_image(images: torch.Tensor, nrow: int | None, scale: int, pad: int) -> Any:
    from PIL import Image

    pixels = to_uint8(images)  # (N, H, W, C)
    n, h, w, c = pixels.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[top : top + h, left : left + w] = pixels[i]
    image = Image.fromarray(grid[..., 0] if c == 1 else grid)  # (H, W) -> "L", (H, W, 3) -> "RGB"
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    return image


def grid_png_bytes(images: torch.Tensor, *, nrow: int | None = None, scale: int = 4, pad: int = 1) -> bytes:
    """PNG bytes of (N, C, H, W) images in [-1, 1] tiled as by :func:`save_grid`."""
    buffer = io.BytesIO()
    _grid_image(images, nrow, scale, pad).save(buffer, format="PNG")
    return buffer.getvalue()


def heatmap_png_bytes(values: torch.Tensor, *, scale: int = 4, vmax: float | None = None) -> bytes:
    """PNG bytes of a non-negative (H, W) map, black (0) to yellow-white (``vmax``, default the map's max)."""
    v = values.detach().float().cpu()
    top = float(v.max()) if vmax is None else float(vmax)
    t = (v / top).clamp(0, 1) if top > 0 else torch.zeros_like(v)
    rgb = torch.stack([(t * 2).clamp(0, 1), (t * 2 - 0.6).clamp(0, 1), (t * 3 - 2).clamp(0, 1)])  # (3, H, W)
    return grid_png_bytes(rgb[None] * 2 - 1, nrow=1, scale=scale, pad=0)


def png_data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for inline images in offline HTML."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def save_grid(images: torch.Tensor, path: str | Path, *, nrow: int | None = None, scale: int = 4, pad: int = 1) -> Path:
    """Tile (N, C, H, W) images into a grid (``nrow`` per row, default square-ish), upscaled ``scale`` times."""
    image = _grid_image(images, nrow, scale, pad)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    image.save(tmp, format="PNG")
    os.replace(tmp, target)
    return target
