"""The training benchmark runs end to end (``--quick``) and reports a ratio for every arm."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_training_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "training.py"), "--quick", "--json", str(out), "--kinds", "edm"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "throughput ratio" in proc.stdout
    report = json.loads(out.read_text())
    assert set(report["arms"]) == {"diffsight edm", "diffusers"}
    assert report["ratios"]["edm"]["ratio"] > 0
