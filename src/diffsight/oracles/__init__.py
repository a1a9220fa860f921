"""Closed-form denoisers with known answers (DESIGN.md, "Oracles")."""

from diffsight.oracles.empirical import EmpiricalOracle
from diffsight.oracles.gaussian import GaussianOracle
from diffsight.oracles.linear import LinearDenoiser
from diffsight.oracles.mixture import GaussianMixtureOracle

__all__ = ["EmpiricalOracle", "GaussianMixtureOracle", "GaussianOracle", "LinearDenoiser"]
