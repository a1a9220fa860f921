"""The command line as a user runs it: ``python -m diffsight ...`` in a subprocess of this interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import diffsight
from diffsight.sampling import SAMPLERS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "diffsight", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_version_prints_the_package_version(tmp_path: Path) -> None:
    proc = run_cli("--version", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"diffsight {diffsight.__version__}"


def test_help_lists_the_demo(tmp_path: Path) -> None:
    proc = run_cli("--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "demo" in proc.stdout


def test_demo_writes_a_png_and_prints_its_absolute_path(tmp_path: Path) -> None:
    out = tmp_path / "figures" / "demo.png"  # the folder does not exist yet
    proc = run_cli("toy-demo", "--out", str(out), "--n", "300", "--steps", "8", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert any(str(out.resolve()) in line for line in proc.stdout.splitlines()), proc.stdout
    assert "eight_gaussians" in proc.stdout and "NFE" in proc.stdout
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in out.parent.iterdir()) == ["demo.png"]  # no temporary file left behind

    import matplotlib.image

    image = matplotlib.image.imread(out)
    height, width = image.shape[:2]
    assert 300 <= height <= 3000 and 600 <= width <= 5000
    assert image.shape[2] in (3, 4)
    assert float(image[..., :3].std()) > 0.05  # not a blank canvas


def test_demo_relative_out_is_resolved_against_the_working_folder(tmp_path: Path) -> None:
    proc = run_cli("toy-demo", "--out", "sub/rel.png", "--n", "50", "--steps", "2", "--sampler", "ddpm", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = (tmp_path / "sub" / "rel.png").resolve()
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert str(out) in proc.stdout


def test_unknown_sampler_is_a_one_line_error_naming_the_samplers(tmp_path: Path) -> None:
    out = tmp_path / "bad.png"
    proc = run_cli("toy-demo", "--out", str(out), "--sampler", "warp_drive", cwd=tmp_path)
    line = assert_one_line_error(proc)
    assert "warp_drive" in line
    for name in SAMPLERS:
        assert name in line
    assert not out.exists()


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--n", "0"], "n (the number of points)"),
        (["--steps", "0"], "steps"),
        (["--dataset", "spiral"], "eight_gaussians"),
    ],
)
def test_bad_numbers_and_names_are_one_line_errors(tmp_path: Path, flags: list[str], needle: str) -> None:
    out = tmp_path / "bad.png"
    proc = run_cli("toy-demo", "--out", str(out), *flags, cwd=tmp_path)
    line = assert_one_line_error(proc)
    assert needle in line
    assert not out.exists()
