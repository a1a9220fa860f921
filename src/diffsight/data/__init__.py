"""Built-in data (DESIGN.md, "Data built in"): nothing here downloads anything."""

from diffsight.data.dataset import TrainingData
from diffsight.data.digits import load_digits
from diffsight.data.registry import BUILTIN_DATASETS, load_data
from diffsight.data.shapes import SHAPE_FACTORS, make_shapes
from diffsight.data.toy2d import (
    EIGHT_GAUSSIANS_RADIUS,
    EIGHT_GAUSSIANS_STD,
    TOY2D,
    checkerboard,
    eight_gaussians,
    eight_gaussians_means,
    eight_gaussians_mixture,
    make_toy2d,
    moons,
    swiss_roll,
)

__all__ = [
    "BUILTIN_DATASETS",
    "EIGHT_GAUSSIANS_RADIUS",
    "EIGHT_GAUSSIANS_STD",
    "SHAPE_FACTORS",
    "TOY2D",
    "TrainingData",
    "checkerboard",
    "eight_gaussians",
    "eight_gaussians_means",
    "eight_gaussians_mixture",
    "load_data",
    "load_digits",
    "make_shapes",
    "make_toy2d",
    "moons",
    "swiss_roll",
]
