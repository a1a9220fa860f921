"""The time-series benchmark runs end to end (``--quick``) and prints the model beside both baselines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_series_benchmark_runs() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "series.py"), "--quick", "--only", "sunspots", "--fractions", "0.5"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = proc.stdout.strip().splitlines()[-1].split()
    assert row[:2] == ["sunspots", "50%"]
    crps, mae, linear, seasonal = float(row[3]), float(row[4]), float(row[7]), float(row[8])
    assert min(crps, mae, linear, seasonal) > 0
