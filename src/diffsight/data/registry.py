"""One entry point for every dataset: a built-in name or a path to the user's own data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from diffsight.data.dataset import TrainingData
from diffsight.data.toy2d import TOY2D, make_toy2d
from diffsight.errors import DiffsightError

__all__ = ["BUILTIN_DATASETS", "holdout_split", "load_data"]

BUILTIN_DATASETS: tuple[str, ...] = ("digits", "shapes", *(f"toy2d:{name}" for name in TOY2D))


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise DiffsightError(f"expected true or false, got {value!r}")
        return value.lower() in ("true", "1", "yes")
    return bool(value)


def load_data(
    spec: str | Path,
    *,
    resolution: int | None = None,
    channels: int | None = None,
    n: int | None = None,
    seed: int = 0,
    options: Mapping[str, Any] | None = None,
) -> TrainingData:
    """Load a dataset by built-in name or path.

    Args:
        spec: ``"digits"``, ``"shapes"``, ``"toy2d:<name>"`` (or a bare toy name such as ``"moons"``), a folder of
            PNG/JPEG images (classes from sub-folders), or a ``.npy`` / ``.npz`` file.
        resolution: image side length (shapes and image folders; digits are always 8x8).
        channels: 1 (grayscale) or 3 (RGB) for image folders; default: what the files hold.
        n: number of samples for generated data (shapes, toy2d).
        seed: seed of generated data.
        options: loader-specific settings, e.g. ``{"frequencies": {...}}`` for shapes, ``{"crop": "center"}``
            for image folders, ``{"key": "x", "labels_key": "y"}`` for .npz files; for any dataset
            ``{"holdout": 0.1}`` keeps a seeded 10% out (``"holdout_seed"``, default 0) and returns the rest, or
            the held-out part with ``{"split": "heldout"}`` (``"all"`` ignores the holdout).
    """
    opts = dict(options or {})
    holdout = opts.pop("holdout", None)
    split = opts.pop("split", "train")
    holdout_seed = int(opts.pop("holdout_seed", 0))
    data = _load(str(spec), resolution=resolution, channels=channels, n=n, seed=seed, opts=opts)
    if holdout is None:
        if split != "train":
            raise DiffsightError(f"split={split!r} needs a holdout fraction in the data options")
        return data
    return holdout_split(data, float(holdout), split=split, seed=holdout_seed)


def holdout_split(data: TrainingData, fraction: float, *, split: str = "train", seed: int = 0) -> TrainingData:
    """A seeded split of ``data``: ``"train"`` (the rest), ``"heldout"`` (``fraction`` of it) or ``"all"``.

    The same (fraction, seed) always holds out the same items, whatever the caller, so a model's held-out set
    can be reloaded from its ``diffsight.json`` for membership tests and anomaly baselines.
    """
    if not 0.0 < fraction < 1.0:
        raise DiffsightError(f"holdout must be a fraction in (0, 1), got {fraction}")
    if split not in ("train", "heldout", "all"):
        raise DiffsightError(f"split must be 'train', 'heldout' or 'all', got {split!r}")
    if split == "all":
        return data
    count = len(data)
    held = max(1, round(fraction * count))
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    index = torch.sort(order[:held] if split == "heldout" else order[held:]).values
    part = data.subset(index)
    source = {**part.source, "holdout": fraction, "holdout_seed": seed, "split": split, "of": count}
    return replace(part, source=source)


def _load(
    text: str, *, resolution: int | None, channels: int | None, n: int | None, seed: int, opts: dict[str, Any]
) -> TrainingData:
    if text == "digits":
        if resolution not in (None, 8):
            raise DiffsightError(f"digits are 8x8 images; drop --resolution or set it to 8 (got {resolution})")
        from diffsight.data.digits import load_digits

        return load_digits()
    if text == "shapes":
        from diffsight.data.shapes import make_shapes

        return make_shapes(
            10_000 if n is None else n,
            resolution=resolution or 16,
            seed=seed,
            frequencies=opts.get("frequencies"),
            jitter=_flag(opts.get("jitter", True)),
        )
    toy = text.removeprefix("toy2d:")
    if toy in TOY2D:
        generator = torch.Generator().manual_seed(seed)
        points = make_toy2d(toy, 10_000 if n is None else n, generator=generator)
        source = {"origin": "diffsight.data.toy2d", "seed": seed}
        return TrainingData(name=f"toy2d:{toy}", samples=points, source=source)
    path = Path(text).expanduser()
    if not path.exists():
        raise DiffsightError(
            f"no dataset called {text!r} and no such file or folder; use one of {', '.join(BUILTIN_DATASETS)}, "
            "a folder of PNG/JPEG images, or a .npy/.npz file"
        )
    if path.is_dir():
        from diffsight.data.image_folder import load_image_folder

        return load_image_folder(path, resolution=resolution, channels=channels, crop=opts.get("crop", "center"))
    if path.suffix.lower() in (".npy", ".npz"):
        from diffsight.data.arrays import load_arrays

        return load_arrays(path, key=opts.get("key"), labels_key=opts.get("labels_key"))
    raise DiffsightError(f"{path}: not a folder of images nor a .npy/.npz file")
