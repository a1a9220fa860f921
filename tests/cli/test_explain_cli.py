"""`diffsight explain` and `diffsight demo` run the way a user runs them: real processes, real files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from browser import external_references


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "diffsight", *args], cwd=cwd, capture_output=True, text=True, timeout=400
    )


def test_explain_a_model_then_its_saved_trace(tmp_path: Path) -> None:
    proc = run_cli(
        "explain",
        "shapes",
        "--seed",
        "4",
        "--steps",
        "8",
        "--k",
        "4",
        "--branch-steps",
        "3",
        "-o",
        "out/r.html",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("Decided") and "shape" in lines[0] and "colour" in lines[0]
    report = Path(lines[-1].removeprefix("report: "))
    trace = Path(next(line for line in lines if line.startswith("trace: ")).removeprefix("trace: "))
    assert report == (tmp_path / "out" / "r.html").resolve() and trace.parent == report.parent
    assert external_references(report.read_text()) == []
    again = run_cli("explain", str(trace), "--k", "4", "--branch-steps", "3", "-o", "again.html", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "replay bit-exact" in again.stderr
    assert again.stdout.splitlines()[0] == lines[0]  # same trace, same seeds for branching: the same numbers


def test_explain_refuses_bad_input_with_one_line(tmp_path: Path) -> None:
    cases = [
        (("explain", "shapes", "-o", "r.txt"), "--out must end in .html"),
        (("explain", "shapes", "--class", "3", "-o", "r.html"), "unconditional"),
        (("explain", "digits", "--guidance", "2", "-o", "r.html"), "--guidance needs --class"),
        (("explain", "digits", "--class", "eleven", "-o", "r.html"), "unknown class"),
        (("explain", "no-such-model", "-o", "r.html"), "no model called"),
    ]
    for args, message in cases:
        proc = run_cli(*args, cwd=tmp_path)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert message in proc.stderr, (args, proc.stderr)
    assert not list(tmp_path.glob("*.html"))


def test_demo_writes_the_report_and_prints_its_path(tmp_path: Path) -> None:
    proc = run_cli("demo", "--out", "demo-out", "--k", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = tmp_path / "demo-out" / "report.html"
    assert proc.stdout.splitlines()[-1] == f"report: {report.resolve()}"
    assert len(list((tmp_path / "demo-out").glob("report.*.trace.safetensors"))) == 3
    assert "shape" in proc.stdout and "colour" in proc.stdout
