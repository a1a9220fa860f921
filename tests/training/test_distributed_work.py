"""Generation and attribution shared between processes (torchrun, gloo on CPUs) give the 1-process result.

Issue 9: batch generation, explanation and audits split across processes and gather their results. The share
arithmetic is checked directly; the real thing runs under torchrun with 2 processes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from diffsight.training.distributed import share

pytestmark = pytest.mark.usefixtures("one_thread")

SCRIPT = """
import sys, torch
from diffsight.audit.data_attribution import TrainingAttribution
from diffsight.oracles.linear import LinearDenoiser
from diffsight.training.distributed import is_main_process
torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
data = torch.randn(37, 3, generator=g, dtype=torch.float64)
lin = LinearDenoiser(data, torch.logspace(-1, 0.5, 4, dtype=torch.float64), draws=2, generator=g)
att = TrainingAttribution(lin, data, projection_dim=6, batch_size=5).featurize()
if is_main_process():
    torch.save({"features": att.features, "grads": att.train_grads}, sys.argv[1])
"""


def test_shares_cover_every_item_once() -> None:
    for n in (0, 1, 5, 17):
        for p in (1, 2, 3, 8):
            parts = [share(n, p, r) for r in range(p)]
            assert [i for s in parts for i in range(n)[s]] == list(range(n))
            sizes = [len(range(n)[s]) for s in parts]
            assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError):
        share(4, 2, 2)


def _torchrun(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_sample_command_under_two_processes_equals_one(tmp_path: Path) -> None:
    args = ["sample", "digits", "-n", "7", "--steps", "6", "--class", "3", "--seed", "5"]
    one = subprocess.run(
        [sys.executable, "-m", "diffsight", *args, "-o", "one.npy"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr[-2000:]
    two = _torchrun(tmp_path, "-m", "diffsight", *args, "-o", "two.npy")
    assert two.stdout.count("7 samples from digits") == 1  # only the main process writes and reports
    a, b = np.load(tmp_path / "one.npy"), np.load(tmp_path / "two.npy")
    assert a.shape == b.shape == (7, 1, 8, 8)
    assert np.abs(a - b).max() < 1e-5  # the same rows: each process takes its slice of the same initial noise


@pytest.mark.slow
def test_attribution_features_shared_between_processes(tmp_path: Path) -> None:
    (tmp_path / "featurize.py").write_text(SCRIPT)
    _torchrun(tmp_path, str(tmp_path / "featurize.py"), str(tmp_path / "two.pt"))
    single = subprocess.run(
        [sys.executable, str(tmp_path / "featurize.py"), str(tmp_path / "one.pt")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr[-2000:]
    one = torch.load(tmp_path / "one.pt", weights_only=True)  # our own test output, tensors only
    two = torch.load(tmp_path / "two.pt", weights_only=True)
    torch.testing.assert_close(two["grads"], one["grads"])  # rows in example order
    torch.testing.assert_close(two["features"], one["features"])


@pytest.mark.slow
def test_explain_seeds_shared_between_processes(tmp_path: Path) -> None:
    args = ["explain", "digits", "--seed", "0", "--seed", "1", "--class", "4", "--steps", "6", "--k", "2"]
    args += ["--branch-steps", "2", "--no-attribution", "--no-likelihood"]
    one = subprocess.run(
        [sys.executable, "-m", "diffsight", *args, "-o", "one.html"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert one.returncode == 0, one.stderr[-2000:]
    two = _torchrun(tmp_path, "-m", "diffsight", *args, "-o", "two.html")
    narrative = [line for line in one.stdout.splitlines() if not line.startswith(("trace:", "report:"))]
    assert [line for line in two.stdout.splitlines() if not line.startswith(("trace:", "report:"))] == narrative
    assert two.stdout.count("report:") == 1 and (tmp_path / "two.html").is_file()
