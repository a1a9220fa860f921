"""The reconstruction benchmark runs end to end (``--quick``) and reports every task beside its baseline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_reconstruction_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "rec.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "reconstruction.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    tasks = {row["task"] for row in report["rows"] if row["model"] == "digits"}
    assert tasks == {"inpaint", "denoise", "superres", "deblur", "mri", "ct"}
    assert all(row["nfe"] > 0 and row["baseline_psnr"] > 0 for row in report["rows"])
    assert 0 < report["coverage"]["observed_all_pixels"] <= 1
