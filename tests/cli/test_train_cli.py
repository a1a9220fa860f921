"""``diffsight train / sample / eval`` as a user runs them: real processes, real files, a real SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

TINY = """
name = "tiny"
[data]
name = "digits"
[model]
preset = "tiny"
[train]
steps = {steps}
batch_size = 16
lr = 1e-3
warmup_steps = 5
log_every = 10
checkpoint_every = {every}
sample_every = 0
"""


def cli(*args: str | Path, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "diffsight", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
    )


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_file(str(a)), load_file(str(b))
    return wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)


def test_sigkill_then_resume_ends_bit_identical_to_an_uninterrupted_run(tmp_path: Path) -> None:
    steps = 300
    config = tmp_path / "tiny.toml"
    config.write_text(TINY.format(steps=steps, every=20))
    straight = cli("train", config, "--out", tmp_path / "straight", "--no-progress", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr

    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "diffsight", "train", str(config), "--out", str(killed_dir), "--no-progress"],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    checkpoints = killed_dir / "checkpoints"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        done = [p for p in checkpoints.glob("step-*")] if checkpoints.is_dir() else []
        if any(int(p.name[5:]) >= 60 for p in done):
            break
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    last = max(int(p.name[5:]) for p in checkpoints.glob("step-*"))
    assert 60 <= last < steps, f"killed at checkpoint {last}: not mid-training"
    assert not (killed_dir / "model").exists()

    resumed = cli("train", config, "--out", killed_dir, "--resume", "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    final = f"step-{steps:08d}"
    for name in ("model.safetensors", "ema.safetensors", "optimizer.safetensors"):
        assert same_weights(tmp_path / "straight" / "checkpoints" / final / name, checkpoints / final / name), name
    unet = Path("model") / "unet" / "diffusion_pytorch_model.safetensors"
    assert same_weights(tmp_path / "straight" / unet, killed_dir / unet)
    logged = [json.loads(line)["step"] for line in (killed_dir / "metrics.jsonl").read_text().splitlines()]
    assert logged == list(range(10, steps + 1, 10))  # no duplicated lines from the killed session


def test_a_truncated_checkpoint_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY.format(steps=10, every=10))
    assert cli("train", config, "--out", tmp_path / "run", "--no-progress", cwd=tmp_path).returncode == 0
    target = tmp_path / "run" / "checkpoints" / "step-00000010" / "ema.safetensors"
    target.write_bytes(target.read_bytes()[:-50])
    proc = cli("train", config, "--out", tmp_path / "run", "--resume", "--steps", "20", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "ema.safetensors is truncated" in proc.stderr and "delete" in proc.stderr


def write_png_folder(root: Path, size: int = 16) -> None:
    rng = np.random.default_rng(0)
    for label, colour in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
        (root / label).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            pixels[4:12, 4:12] = colour
            Image.fromarray(pixels).save(root / label / f"{i}.png")


def test_train_on_a_folder_of_pngs_then_sample_and_eval(tmp_path: Path) -> None:
    write_png_folder(tmp_path / "pngs")
    run = tmp_path / "run"
    proc = cli(
        "train",
        "--data",
        tmp_path / "pngs",
        "--steps",
        "4",
        "--batch-size",
        "4",
        "--out",
        run,
        "--no-progress",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "trained 4 steps" in proc.stdout
    info = json.loads((run / "model" / "diffsight.json").read_text())
    assert info["event_shape"] == [3, 16, 16]
    assert info["conditioning"]["class_names"] == ["blue", "red"]
    assert (run / "samples" / "step-00000004.png").is_file()
    card = (run / "model" / "README.md").read_text()
    assert info["data"]["fingerprint"] in card

    grid = tmp_path / "grid.png"
    proc = cli("sample", run / "model", "--n", "6", "--steps", "3", "--class", "red", "-o", grid, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(grid).size[0] > 16

    proc = cli("eval", run / "model", "--n", "6", "--steps", "2", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["features"] == "pixels" and report["n"] == 6 and "fd_floor" in report


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("train", "--data", "no/such/folder", "--steps", "1"), "no dataset called"),
        (("train", "--config", "missing.toml"), "not found"),
        (("sample", "no-such-model"), "no model called"),
        (("sample", "digits", "--class", "7", "--out", "x.jpg"), "must end in .png or .npy"),
    ],
)
def test_bad_input_gives_one_line_errors(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    proc = cli(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert message in proc.stderr


def test_an_empty_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    proc = cli("train", "--data", tmp_path / "empty", "--steps", "1", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "empty" in proc.stderr or "no PNG" in proc.stderr or "no image" in proc.stderr.lower()
