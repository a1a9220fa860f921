"""`diffsight impute-series` and `diffsight watch` run the way a user runs them: real subprocesses, stdin, refusals."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
FAST = ["--steps", "30", "--window", "16"]


def run_cli(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "diffsight", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        input=stdin,
        env=ENV,
    )


def seasonal(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 10 + np.sin(2 * np.pi * t / 12) + 0.1 * rng.standard_normal(n)


@pytest.fixture
def csv_with_gaps(tmp_path: Path) -> Path:
    x = seasonal(80)
    y = 0.5 * x + np.random.default_rng(1).standard_normal(80) * 0.1
    x[[10, 11, 12, 40]] = np.nan
    y[[3, 60]] = np.nan
    pd.DataFrame({"month": pd.date_range("2000-01-01", periods=80, freq="MS"), "x": x, "y": y}).to_csv(
        tmp_path / "data.csv", index=False
    )
    return tmp_path / "data.csv"


@pytest.mark.slow
def test_impute_series_fills_gaps_with_intervals_and_a_forecast(csv_with_gaps: Path, tmp_path: Path) -> None:
    proc = run_cli(
        "impute-series",
        str(csv_with_gaps),
        "-o",
        "filled.csv",
        "--time-column",
        "month",
        "--samples",
        "8",
        "--intervals",
        "--forecast",
        "4",
        *FAST,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "filled 6 missing value(s) in 2 column(s), forecast 4 step(s)" in proc.stdout
    assert "fill: seasonal profile on " in proc.stderr and "network correction kept at w = " in proc.stderr
    out = pd.read_csv(tmp_path / "filled.csv")
    original = pd.read_csv(csv_with_gaps)
    assert list(out.columns) == ["month", "x", "y", "x_lower", "x_upper", "y_lower", "y_upper"]
    assert len(out) == 84 and not out[["x", "y"]].isna().any().any()
    assert out["month"].iloc[-1] == "2006-12-01"  # the monthly stamps continue into the forecast
    seen = original["x"].notna()
    assert np.allclose(out.loc[:79, "x"][seen], original["x"][seen])  # observed values are kept
    hidden = out["x_lower"].notna()
    assert hidden.sum() == 4 + 4 and (out["x_lower"][hidden] <= out["x_upper"][hidden]).all()


@pytest.mark.slow
def test_watch_reads_stdin_and_prints_each_score_as_the_value_arrives(tmp_path: Path) -> None:
    pd.DataFrame({"v": seasonal(100)}).to_csv(tmp_path / "train.csv", index=False)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "diffsight",
            "watch",
            "--train",
            "train.csv",
            "--save",
            "model",
            "--samples",
            "8",
            *FAST,
        ],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    assert proc.stdin is not None and proc.stdout is not None
    stream = seasonal(40, seed=5)
    stream[30] += 6.0  # an injected jump
    for v in stream[:16]:  # exactly one window: one score must come out while stdin stays open
        proc.stdin.write(f"{v}\n")
    proc.stdin.flush()
    lines = []
    while len(lines) < 2:
        ready, _, _ = select.select([proc.stdout], [], [], 240)
        assert ready, "watch printed nothing while its input stayed open"
        lines.append(proc.stdout.readline().strip())
    assert lines[0] == "index,z,score,flag" and lines[1].startswith("115,")
    rest, err = proc.communicate("".join(f"{v}\n" for v in stream[16:]), timeout=240)
    assert proc.returncode == 0, err
    rows = [line.split(",") for line in [lines[1], *rest.strip().splitlines()]]
    assert len(rows) == 40 - 15
    z = {int(r[0]) - 100: float(r[1]) for r in rows}
    assert max(z, key=z.get) in (30, 31) and rows[30 - 15][3] == "anomaly"
    # the saved model scores a file the same way
    (tmp_path / "in.txt").write_text("v\n" + "\n".join(map(str, stream)) + "\n")
    again = run_cli("watch", "model", "--input", "in.txt", "--samples", "8", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert len(again.stdout.strip().splitlines()) == 1 + 25
    bad = run_cli("watch", "model", "--samples", "4", cwd=tmp_path, stdin="1\nabc\n")
    assert bad.returncode == 2 and "input line 2: 'abc' is not a number" in bad.stderr


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ("a,b\n1,2\n3,4\n5,6\n7,8\n9,10\n11,12\n13,14\n15,16\n17,18\n", [], "no missing values"),
        ("a,b\n1,x\n,y\n3,z\n", [], "not numeric"),
        ("a,b\n1,\n3,4\n5,6\n7,8\n", [], "needs at least 8"),
        ("a\n1\n\n3\n", ["--time-column", "t"], "time column 't' is not in the table"),
    ],
)
def test_impute_series_refuses_bad_input(tmp_path: Path, content: str, args: list[str], message: str) -> None:
    (tmp_path / "bad.csv").write_text(content)
    proc = run_cli("impute-series", "bad.csv", "-o", "out.csv", *args, *FAST, cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out.csv").exists()


def test_watch_refuses_a_missing_model(tmp_path: Path) -> None:
    proc = run_cli("watch", cwd=tmp_path, stdin="1\n")
    assert proc.returncode == 2 and "exactly one" in proc.stderr
    proc = run_cli("watch", "nowhere", cwd=tmp_path, stdin="1\n")
    assert proc.returncode == 2 and "not a series model folder" in proc.stderr
