"""The table benchmark runs end to end (``--quick``) and reports every imputer and the interval coverage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_quick_tables_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "tables.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "tables.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report) == {"breast_cancer", "wine", "diabetes"}
    for row in report.values():
        assert {"mean", "KNN (k=5)", "iterative", "diffusion", "diffusion (repaint)", "coverage"} <= set(row)
        assert row["diffusion"] < 1.5 * row["mean"] and 0.0 <= row["coverage"] <= 1.0
    assert "| wine |" in proc.stdout
