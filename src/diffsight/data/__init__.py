"""Built-in data (DESIGN.md, "Data built in"): nothing here downloads anything."""

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
    "EIGHT_GAUSSIANS_RADIUS",
    "EIGHT_GAUSSIANS_STD",
    "TOY2D",
    "checkerboard",
    "eight_gaussians",
    "eight_gaussians_means",
    "eight_gaussians_mixture",
    "make_toy2d",
    "moons",
    "swiss_roll",
]
