"""The GPU check's throughput script runs on a CPU too (the GPU figures are measured when a GPU is lent), and
benchmarks/gpu.sh refuses a machine without one with a clear message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def test_throughput_script_reports_images_per_second(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "gpu_throughput.py"),
            "digits",
            "--steps",
            "3",
            "--batches",
            "4,8",
            "--repeats",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert [r["batch"] for r in report["rows"]] == [4, 8]
    assert all(r["images_per_s"] > 0 for r in report["rows"])
    assert report["device"] in proc.stdout


def test_gpu_script_refuses_a_machine_without_a_gpu() -> None:
    if torch.cuda.is_available():
        return
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu.sh")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PY": sys.executable},
    )
    assert proc.returncode != 0 and "needs a CUDA GPU" in proc.stderr + proc.stdout
