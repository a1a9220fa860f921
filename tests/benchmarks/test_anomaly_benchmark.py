"""The anomaly benchmark runs end to end (``--quick``) and prints AUROCs beside the Gaussian baselines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_anomaly_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "anomaly.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "anomaly.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report["auroc"]) == {"shapes", "noise", "inverted", "rotated"}
    assert set(report["auroc"]["noise"]) == {"diffusion", "pixel Gaussian", "PCA Gaussian"}
    assert report["auroc"]["noise"]["diffusion"] > 0.9  # even the smoke run tells noise from digits
