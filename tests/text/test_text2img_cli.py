"""``diffsight text2img`` as a user runs it: a subprocess on a local folder, with the attention report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from browser import external_references

pytest.importorskip("transformers")


@pytest.mark.slow
def test_text2img_cli_writes_the_image_and_the_report(tiny_sd_folder: Path, tmp_path: Path) -> None:
    out, report = tmp_path / "out.png", tmp_path / "report.html"
    cmd = [
        sys.executable, "-m", "diffsight", "text2img", str(tiny_sd_folder), "--prompt", "a red cat on the mat",
        "--seed", "3", "--steps", "3", "--guidance", "4", "-o", str(out), "--attention-report", str(report),
        "--max-words", "2", "--swap", "red=blue", "--information-points", "2",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = report.read_text()
    assert "Word maps per step" in page and "a red cat on the mat" in page and "swap" in page
    assert external_references(page) == []  # a single offline file
    assert "drop 'a'" in done.stdout and "swap 'red'" in done.stdout and "i(x; 'red' | rest)" in done.stdout
