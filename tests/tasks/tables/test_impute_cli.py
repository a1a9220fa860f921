"""`diffsight impute` as a user runs it: a real subprocess on a tiny CSV, and its refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "diffsight", "impute", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def tiny_csv(path: Path) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.normal(size=80)
    frame = pd.DataFrame({"x": x, "y": 3 * x + rng.normal(size=80) * 0.2, "colour": np.where(x > 0, "red", "blue")})
    frame.loc[[1, 5, 9], "y"] = np.nan
    frame.loc[[2, 6], "colour"] = None
    frame.to_csv(path, index=False)
    return frame


@pytest.mark.slow
def test_impute_fills_a_csv_and_writes_intervals(tmp_path: Path) -> None:
    holed = tiny_csv(tmp_path / "data.csv")
    proc = run_cli(
        "data.csv",
        "-o",
        "out/filled.csv",
        "--intervals",
        "--steps",
        "60",
        "--samples",
        "8",
        "--save-model",
        "m",
        "--no-progress",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "filled 5 cells in 5 rows" in proc.stdout and "intervals (90%" in proc.stdout
    assert "trained 60 steps" in proc.stderr
    filled = pd.read_csv(tmp_path / "out" / "filled.csv")
    assert filled.shape == holed.shape and filled.notna().all().all()
    np.testing.assert_allclose(filled["x"], holed["x"])
    assert set(filled["colour"]) <= {"red", "blue"}
    cells = pd.read_csv(tmp_path / "out" / "filled.intervals.csv")
    assert list(cells.columns) == ["row", "column", "value", "lower", "upper", "probability"]
    assert sorted(zip(cells["row"], cells["column"], strict=True)) == [
        (1, "y"),
        (2, "colour"),
        (5, "y"),
        (6, "colour"),
        (9, "y"),
    ]
    numeric = cells[cells["column"] == "y"]
    assert (numeric["lower"] <= numeric["value"].astype(float)).all()
    assert (numeric["value"].astype(float) <= numeric["upper"]).all()
    assert cells[cells["column"] == "colour"]["probability"].between(0, 1).all()
    # the saved model fills the same file without training again
    again = run_cli("data.csv", "-o", "again.csv", "--model", "m", "--samples", "8", "--no-stack", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "trained" not in again.stderr and "linear fill" not in again.stdout  # the draws' mean alone


def run_main(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """The installed entry point, in this process: ``diffsight impute ARGS``; returns the exit code."""
    from diffsight.cli.main import main

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["diffsight", "impute", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return int(exit_info.value.code or 0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ("a,b\n", "no rows"),
        ("a,b\n1,2\n3,4\n", "no missing values"),
        ("a,b\n1,\n3,\n", "hold no values"),
        ("a,when\n1,2020-01-01\n,2021-03-04\n", "holds dates"),
        ("a,b\n1,1.5\n,2.5\n2,3.5\n4,4.5\n5,oops\n", "mostly numbers but holds text such as 'oops'"),
    ],
)
def test_bad_csvs_are_refused_with_one_line(
    tmp_path: Path, content: str, message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.csv").write_text(content)
    assert run_main(["bad.csv", "-o", "out.csv", "--steps", "1"], tmp_path, monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "out.csv").exists()


def test_missing_file_and_conflicting_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_main(["nope.csv", "-o", "out.csv"], tmp_path, monkeypatch) == 2
    assert "no such file" in capsys.readouterr().err
    tiny_csv(tmp_path / "d.csv")
    assert run_main(["d.csv", "-o", "out.csv", "--steps", "5", "--epochs", "2"], tmp_path, monkeypatch) == 2
    assert "not both" in capsys.readouterr().err
