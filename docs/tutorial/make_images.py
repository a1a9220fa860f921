"""Stand-in for your own photos: a folder of 32x32 PNGs in two class sub-folders (circles/, squares/)."""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

rng = np.random.default_rng(0)
for label in ("circles", "squares"):
    folder = Path("my_images") / label
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(60):
        image = Image.new("RGB", (32, 32), tuple(int(v) for v in rng.integers(0, 80, 3)))
        draw = ImageDraw.Draw(image)
        cx, cy = (int(v) for v in rng.integers(9, 23, 2))
        r = int(rng.integers(5, 9))
        colour = tuple(int(v) for v in rng.integers(120, 256, 3))
        box = (cx - r, cy - r, cx + r, cy + r)
        (draw.ellipse if label == "circles" else draw.rectangle)(box, fill=colour)
        image.save(folder / f"{label}-{i:03d}.png")
print("wrote", len(list(Path("my_images").rglob("*.png"))), "images under my_images/")
