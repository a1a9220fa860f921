"""`diffsight score` the way a user runs it: held-out digits, PNG files a user hands in, JSON and a report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from browser import external_references


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "diffsight", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_heldout_digits_as_json_with_class_information(tmp_path: Path) -> None:
    proc = run_cli("score", "digits", "heldout", "--n", "6", "--points", "16", "--class", "3", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["model"] == "digits" and out["nfe_per_input"] > 0 and len(out["inputs"]) == 6
    for row in out["inputs"]:
        assert row["input"].startswith("heldout[") and row["levels"] == 17
        assert 0 < row["bits_per_dim"] < 10 and row["bits_per_dim_stderr"] > 0
        assert row["class"] == "3" and "pmi_nats" in row


def test_png_files_noise_is_more_surprising_than_a_digit(tmp_path: Path) -> None:
    from diffsight.data import load_data

    digit = load_data("digits").samples[0, 0]  # (8, 8) in [-1, 1]
    Image.fromarray(((digit.numpy() + 1) * 127.5).round().astype(np.uint8)).save(tmp_path / "digit.png")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / "noise.png")
    proc = run_cli("score", "digits", "digit.png", "noise.png", "--points", "32", "-o", "out/score.html", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    bpd = {line.split()[0]: float(line.split()[1]) for line in lines[:2]}
    assert bpd["noise.png"] > bpd["digit.png"] + 1.0, proc.stdout
    assert "network evaluations each" in lines[2]
    page = (tmp_path / "out" / "score.html").read_text()
    assert external_references(page) == [] and page.count("data:image/png;base64,") >= 4
    assert lines[-1] == f"report: {(tmp_path / 'out' / 'score.html').resolve()}"


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    cases = [
        (("score", "digits", "missing.png"), "neither an image file"),
        (("score", "shapes", "shapes", "--n", "2", "--class", "1"), "unconditional"),
        (("score", "digits", "heldout", "-o", "r.txt"), "--out must end in .html"),
        (("score", "shapes", "heldout"), "no held-out data"),
    ]
    for args, message in cases:
        proc = run_cli(*args, cwd=tmp_path)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert message in proc.stderr, (args, proc.stderr)
