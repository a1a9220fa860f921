"""The tutorial "train on your own images": its code blocks are files, and the files run, in order, as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "train-your-own-images.md"
FILE_BLOCK = re.compile(r"^<!-- file: (\S+) -->\n```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def file_blocks() -> list[tuple[Path, str, str]]:
    return [(ROOT / m.group(1), m.group(2), m.group(3)) for m in FILE_BLOCK.finditer(TUTORIAL.read_text())]


def test_every_code_block_is_the_file_it_names() -> None:
    blocks = file_blocks()
    assert [p.name for p, _, _ in blocks] == ["make_images.py", "train.sh", "sample.sh", "use_in_python.py"]
    for path, _, code in blocks:
        assert path.read_text() == code, f"{path.relative_to(ROOT)} differs from its block in the tutorial"


def test_the_tutorial_runs_end_to_end(tmp_path: Path) -> None:
    bindir = Path(sys.executable).parent  # the `diffsight` console script of this environment
    env = {
        **os.environ,
        "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
        "STEPS": "4",  # the tutorial trains 2000 steps; the test checks that the commands work
        "EVAL_N": "8",
        "OMP_NUM_THREADS": "1",
    }
    for path, language, _ in file_blocks():
        command = [sys.executable, str(path)] if language == "python" else ["bash", "-e", str(path)]
        proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{path.name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    assert (tmp_path / "circles.png").is_file()
    card = (tmp_path / "runs" / "my_images" / "model" / "README.md").read_text()
    assert "fd_floor" in card  # eval --update-card recorded its metrics
