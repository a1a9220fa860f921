"""`diffsight audit` the way a user runs it: one offline HTML page and a JSON summary a pipeline can gate on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from browser import external_references


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "diffsight", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_audit_digits_json_and_page(tmp_path: Path) -> None:
    proc = run_cli("audit", "digits", "--n", "60", "--attribute", "0", "--json", "-o", "out/audit.html", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["model"] == "digits" and summary["n_samples"] == 60
    gate = summary["gate"]
    assert gate["share_flagged_as_copies"] <= 0.05  # the shipped model does not copy (issue 6: at most 2% at n=1000)
    assert 0.5 <= gate["membership_best_auc"] <= 1.0  # members vs the 180 held-out digits
    calibration = summary["memorization"]["calibration"]
    assert calibration["tests"]["pixels"]["positive_flag_rate"] >= 0.99
    assert calibration["tests"]["pixels"]["negative_flag_rate"] <= 0.01
    page = (tmp_path / "out" / "audit.html").read_text()
    assert external_references(page) == []
    for section in ("Memorization", "Membership inference", "Bias"):
        assert f"<h2>{section}</h2>" in page
    assert f"report: {(tmp_path / 'out' / 'audit.html').resolve()}" in proc.stderr


def test_audit_refuses_bad_input(tmp_path: Path) -> None:
    for args, message in [
        (("audit", "digits", "-o", "a.txt"), "--out must end in .html"),
        (("audit", "digits", "--data", "shapes", "--n", "10"), "makes (1, 8, 8)"),
        (("audit", "nope"), "no model called"),
    ]:
        proc = run_cli(*args, cwd=tmp_path)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert message in proc.stderr, (args, proc.stderr[-2000:])
