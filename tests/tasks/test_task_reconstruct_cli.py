"""`diffsight reconstruct` the way a user runs it, on the shipped digits model, and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from diffsight.cli.main import app
from diffsight.errors import DiffsightError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from diffsight.metrics.model_eval import heldout_data_of
    from diffsight.models import load_model

    path = tmp_path_factory.mktemp("rc") / "digit.npy"
    np.save(path, heldout_data_of(load_model("digits")).samples[3].numpy())
    return path


@pytest.mark.slow
def test_inpaint_with_uncertainty_writes_images_and_a_summary(tmp_path: Path, digit: Path) -> None:
    args = ["reconstruct", "digits", "--task", "inpaint", "--input", str(digit), "-o", str(tmp_path / "out/rec.png"),
            "--simulate", "--samples", "3", "--steps", "8", "--uncertainty", "--seed", "1"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "inpaint with repaint" in result.output and "stated 90% per-pixel coverage" in result.output
    for name in ("rec.png", "rec-std.png", "rec-lower.png", "rec-upper.png"):
        assert Image.open(tmp_path / "out" / name).size == (64, 64)
    summary = json.loads((tmp_path / "out" / "rec.json").read_text())
    assert summary["calibration_images"] == 24 and summary["nfe_per_sample"] >= 8
    assert (
        summary["psnr"] > summary["baseline_psnr"] - 3
    )  # a sanity floor at 8 steps; the benchmark has the real numbers


@pytest.mark.parametrize(
    ("task", "extra"),
    [("denoise", ["--noise", "0.3"]), ("superres", []), ("deblur", []), ("ct", ["--angles", "6"]), ("mri", [])],
)
def test_every_task_runs_in_simulation(tmp_path: Path, digit: Path, task: str, extra: list[str]) -> None:
    out = tmp_path / "rec.npy"
    args = ["reconstruct", "digits", "--task", task, "--input", str(digit), "-o", str(out), "--simulate",
            "--samples", "2", "--steps", "4", *extra]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    assert np.load(out).shape == (1, 1, 8, 8)
    assert "PSNR" in result.output


def test_measurement_inputs(tmp_path: Path, digit: Path) -> None:
    """Real measurements: an image with NaN holes, a low-resolution image, a sinogram, a k-space array."""
    from diffsight.tasks.operators import FourierOperator, cartesian_kspace_mask
    from diffsight.tasks.radon import RadonOperator, sparse_view_angles

    x = np.load(digit)
    holes = x.copy()
    holes[0, 2:5, 2:5] = np.nan
    low = x.reshape(1, 4, 2, 4, 2).mean((2, 4))
    import torch

    sino = RadonOperator(sparse_view_angles(5), (1, 8, 8)).A(torch.from_numpy(x)[None])[0, 0].numpy()
    kmask = cartesian_kspace_mask(8, 8, acceleration=2, generator=torch.Generator().manual_seed(0))
    kspace = FourierOperator(kmask, (1, 8, 8)).A(torch.from_numpy(x)[None])[0, 0].numpy()
    for task, array in (("inpaint", holes), ("superres", low), ("ct", sino), ("mri", kspace)):
        np.save(tmp_path / f"{task}.npy", array)
        args = ["reconstruct", "digits", "--task", task, "--input", str(tmp_path / f"{task}.npy"),
                "-o", str(tmp_path / f"{task}-out.npy"), "--samples", "2", "--steps", "4"]  # fmt: skip
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, (task, result.output, result.exception)
        assert np.load(tmp_path / f"{task}-out.npy").shape == (1, 1, 8, 8)


def _refusal(args: list[str]) -> str:
    result = CliRunner().invoke(app, ["reconstruct", "digits", *args])
    assert isinstance(result.exception, DiffsightError), (result.output, result.exception)
    return str(result.exception)


def test_bad_input_is_refused_with_what_to_fix(tmp_path: Path, digit: Path) -> None:
    big = tmp_path / "big.png"
    Image.new("L", (16, 16)).save(big)
    full = tmp_path / "full.npy"
    np.save(full, np.ones((8, 8)))
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((8, 8)))
    out = str(tmp_path / "o.png")
    assert "16x16 but the model works on 8x8" in _refusal(
        ["--task", "denoise", "--input", str(big), "-o", out, "--noise", "0.1"]
    )
    assert "hides nothing" in _refusal(["--task", "inpaint", "--input", str(digit), "-o", out, "--mask", str(full)])
    assert "hides every pixel" in _refusal(
        ["--task", "inpaint", "--input", str(digit), "-o", out, "--mask", str(empty)]
    )
    assert "--mask" in _refusal(["--task", "inpaint", "--input", str(digit), "-o", out])
    assert "--noise" in _refusal(["--task", "denoise", "--input", str(digit), "-o", out, "--noise", "0"])
    assert "choose one of" in _refusal(["--task", "paint", "--input", str(digit), "-o", out])
    assert ".png or .npy" in _refusal(["--task", "denoise", "--input", str(digit), "-o", "x.jpg"])
    assert "not found" in _refusal(["--task", "denoise", "--input", "nope.png", "-o", out, "--noise", "0.1"])
    assert "complex" in _refusal(["--task", "mri", "--input", str(digit), "-o", out])
