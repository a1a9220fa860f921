"""Shared fixtures: small oracles with known answers, and helpers to compare sample moments."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch

from diffsight.oracles import GaussianOracle

# `make test` runs two pytest-xdist workers on a 2-core machine: one thread each, or they fight for the cores.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Run a module single-threaded and restore the setting after: small tensors and tiny UNets gain nothing
    from threads, and on a shared 2-core machine OpenMP's spinning threads make each call far slower. Use it
    with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def gauss2d() -> GaussianOracle:
    """A correlated 2-D Gaussian: the known answer for sampler tests."""
    mean = torch.tensor([1.0, -2.0], dtype=torch.float64)
    cov = torch.tensor([[2.0, 0.8], [0.8, 0.5]], dtype=torch.float64)
    return GaussianOracle(mean, cov)


def moment_errors(samples: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> tuple[float, float]:
    """(max abs error of the mean, relative Frobenius error of the covariance) of 2-D samples (n, d)."""
    m_err = (samples.mean(0) - mean).abs().max().item()
    c_err = ((torch.cov(samples.T) - cov).norm() / cov.norm()).item()
    return m_err, c_err
