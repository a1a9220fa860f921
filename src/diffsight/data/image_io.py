"""Write a batch of images in [-1, 1] as one PNG grid (Pillow)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

__all__ = ["save_grid", "to_uint8"]


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def save_grid(images: torch.Tensor, path: str | Path, *, nrow: int | None = None, scale: int = 4, pad: int = 1) -> Path:
    """Tile (N, C, H, W) images into a grid (``nrow`` per row, default square-ish), upscaled ``scale`` times."""
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
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    image.save(tmp, format="PNG")
    os.replace(tmp, target)
    return target
