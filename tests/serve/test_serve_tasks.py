"""Reconstruction, table imputation and series scoring over HTTP, against the real server process on loopback.

Happy paths: inpainting a held-out digit with ``simulate`` (the known pixels come back, the answer is scored),
denoising an ``array`` with calibrated intervals, inpainting a measured image with a PNG mask, imputing a tiny
CSV (observed cells unchanged, every empty cell filled, one interval line per filled cell), and anomaly scores
of a series with a planted spike. Then malformed requests, each with the right 4xx and a message that says what
to fix, and the server still serving.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from serve_process import API_KEY, Server, shared_server

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

REC = "/v1/reconstruct"
IMP = "/v1/impute"
SER = "/v1/series/score"


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Server:
    return shared_server(request, tmp_path_factory, key=API_KEY)


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client(timeout=120.0) as c:
        yield c


@pytest.fixture(scope="module")
def digit() -> torch.Tensor:
    """A held-out digit (1, 8, 8) in [-1, 1], rounded to 8-bit levels so a PNG carries it exactly."""
    from diffsight.metrics.model_eval import heldout_data_of
    from diffsight.models import load_model

    x = heldout_data_of(load_model("digits")).samples[3]
    return torch.round((x + 1) * 127.5) / 127.5 - 1


def _png(pixels: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), mode="L").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _image_b64(x: torch.Tensor) -> str:
    return _png(((x[0] + 1) * 127.5).round().numpy())


def _decode(uri: str) -> np.ndarray:
    """A data-URI PNG drawn by the server (64x64 for an 8x8 digit) back on the 8x8 grid, in [-1, 1]."""
    from PIL import Image

    assert uri.startswith("data:image/png;base64,")
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("L"), float)
    side = pixels.shape[0] // 8
    return pixels.reshape(8, side, 8, side).mean(axis=(1, 3)) / 127.5 - 1


def test_inpaint_simulated_digit(client: httpx.Client, digit: torch.Tensor) -> None:
    body = {"model": "digits", "task": "inpaint", "image": _image_b64(digit), "simulate": True}
    res = client.post(REC, json={**body, "samples": 2, "steps": 8, "seed": 1})
    assert res.status_code == 200, res.text
    out = res.json()
    assert out["method"] == "repaint" and out["nfe"] > 8 and out["std"] and out["measurement"]
    assert out["lower"] is None and out["upper"] is None  # no intervals asked for
    assert 0 < out["psnr"] < 100 and -1 <= out["ssim"] <= 1 and "baseline_psnr" in out
    mean = _decode(out["mean"])
    known = np.ones((8, 8), bool)
    known[2:6, 2:6] = False  # the simulated mask hides the central square
    truth = digit[0].numpy()
    assert np.abs(mean[known] - truth[known]).max() < 0.1  # the observed pixels come back
    assert np.abs(mean[~known] - truth[~known]).max() > 0.05  # negative control: the hidden ones are guessed


def test_denoise_array_with_intervals(client: httpx.Client, digit: torch.Tensor) -> None:
    body = {"model": "digits", "task": "denoise", "array": digit.tolist(), "simulate": True, "noise_sigma": 0.3}
    res = client.post(REC, json={**body, "samples": 2, "steps": 6, "intervals": True, "coverage": 0.8})
    assert res.status_code == 200, res.text
    out = res.json()
    assert out["method"] == "denoise" and out["coverage"] == pytest.approx(0.8)
    assert out["calibration_images"] >= 5 and 0 <= out["observed_coverage"] <= 1
    lower, upper, mean = _decode(out["lower"]), _decode(out["upper"]), _decode(out["mean"])
    assert (lower <= mean + 0.02).all() and (mean <= upper + 0.02).all() and (upper - lower).mean() > 0.01
    assert out["psnr"] > out["baseline_psnr"] - 3  # the prior does not wreck a denoising


def test_inpaint_measured_image_with_png_mask(client: httpx.Client, digit: torch.Tensor) -> None:
    mask = np.full((8, 8), 255)
    mask[:, 4:] = 0  # right half unknown
    body = {"model": "digits", "task": "inpaint", "image": _image_b64(digit), "mask": _png(mask)}
    res = client.post(REC, json={**body, "samples": 1, "steps": 10})
    assert res.status_code == 200, res.text
    out = res.json()
    assert out["std"] is None and "psnr" not in out  # one sample, nothing to score against
    error = np.abs(_decode(out["mean"]) - digit[0].numpy())
    assert error[:, :4].mean() < 0.1 and error[:, :4].mean() < error[:, 4:].mean()  # known half kept, not the other


def test_impute_tiny_csv(client: httpx.Client) -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=60)
    lines = ["a,b,kind"] + [f"{x:.4f},{2 * x + 1:.4f},{'up' if x > 0 else 'down'}" for x in a]
    lines[5] = f",{2 * a[4] + 1:.4f},up"  # row 4 misses a
    lines[9] = f"{a[8]:.4f},,down"  # row 8 misses b
    lines[12] = f"{a[11]:.4f},{2 * a[11] + 1:.4f},"  # row 11 misses kind
    res = client.post(IMP, json={"csv": "\n".join(lines) + "\n", "steps": 60, "samples": 8, "intervals": True})
    assert res.status_code == 200, res.text
    out = res.json()
    import pandas as pd

    filled = pd.read_csv(io.StringIO(out["filled_csv"]))
    assert filled.shape == (60, 3) and not filled.isna().any().any()
    assert filled["a"][0] == pytest.approx(a[0], abs=1e-4)  # observed cells are kept
    assert filled["kind"][11] in ("up", "down")
    assert out["filled_cells"] == 3 and out["training"]["steps"] == 60
    cells = {(c["row"], c["column"]) for c in out["intervals"]}
    assert cells == {(4, "a"), (8, "b"), (11, "kind")}
    kind = next(c for c in out["intervals"] if c["column"] == "kind")
    assert 0 < kind["probability"] <= 1 and kind["lower"] is None


def test_series_scores_flag_a_spike(client: httpx.Client) -> None:
    t = np.arange(36)
    x = np.sin(2 * np.pi * t / 6) + 0.05 * np.random.default_rng(1).standard_normal(36)
    x[32] += 5.0
    body = {"values": [[v] for v in x.tolist()], "window": 8, "period": 6, "steps": 40, "samples": 6, "train_rows": 28}
    res = client.post(SER, json=body)
    assert res.status_code == 200, res.text
    out = res.json()
    assert out["window"] == 8 and [s["index"] for s in out["scores"]] == list(range(7, 36))
    z = {s["index"]: s["z"] for s in out["scores"]}
    assert max(z, key=z.get) == 32 and 32 in out["flagged"]


def _req(model: str = "digits", **more: Any) -> dict[str, Any]:
    return {"model": model, "task": "inpaint", "simulate": True, "image": _png(np.zeros((8, 8))), **more}


_ZEROS = _png(np.zeros((8, 8)))
_BIG_CSV = "a,b\n" + "1,\n" * 5001
_WIDE_CSV = ",".join(f"c{i}" for i in range(101)) + "\n" + ",".join(["1"] * 100) + ",\n"

# (name, path, body, expected status, a phrase the detail must contain)
CASES: list[tuple[str, str, Any, int, str]] = [
    ("unknown task", REC, _req(task="colorize"), 422, "task"),
    ("unknown model", REC, _req(model="imagenet"), 422, "digits"),
    ("mask hides nothing", REC, _req(mask=[[1.0] * 8] * 8), 422, "hides nothing"),
    ("mask hides everything", REC, _req(mask=_ZEROS), 422, "hides every"),
    ("mask wrong shape", REC, _req(mask=[[1.0, 0.0]] * 3), 422, "(8, 8)"),
    ("array wrong shape", REC, {**_req(image=None), "array": [[[0.0] * 7] * 7]}, 422, "(1, 8, 8)"),
    ("array ragged", REC, {**_req(image=None), "array": [[[0.0] * 8] * 7 + [[0.0] * 3]]}, 422, "ragged"),
    ("array has text", REC, {**_req(image=None), "array": [[["a"] * 8] * 8]}, 422, "array"),
    ("image and array", REC, _req(array=[[[0.0] * 8] * 8]), 422, "either"),
    ("no image", REC, {**_req(), "image": None}, 422, "either"),
    ("bad base64", REC, _req(image="@@not base64@@"), 422, "base64"),
    ("image wrong size", REC, _req(image=_png(np.zeros((7, 7)))), 422, "multiple"),
    ("samples 0", REC, _req(samples=0), 422, "samples"),
    ("samples 999", REC, _req(samples=999), 422, "samples"),
    ("steps over limit", REC, _req(steps=100_000), 422, "steps"),
    ("factor for inpaint", REC, _req(factor=2), 422, "superres"),
    ("noise negative", REC, _req(noise_sigma=-0.1), 422, "noise_sigma"),
    ("ct without simulate", REC, _req(task="ct", simulate=False), 422, "simulate"),
    ("inpaint without mask", REC, _req(simulate=False), 422, "mask"),
    ("intervals with one sample", REC, _req(samples=1, intervals=True), 422, "samples >= 2"),
    ("coverage too high", REC, _req(intervals=True, coverage=0.999), 422, "coverage"),
    ("unknown field", REC, _req(sharpen=True), 422, "sharpen"),
    ("csv no missing values", IMP, {"csv": "a,b\n1,2\n3,4\n5,6\n"}, 422, "no missing values"),
    ("csv too many rows", IMP, {"csv": _BIG_CSV}, 413, "5000"),
    ("csv too many columns", IMP, {"csv": _WIDE_CSV}, 413, "100"),
    ("csv empty", IMP, {"csv": ""}, 422, "csv"),
    ("csv header only", IMP, {"csv": "a,b\n"}, 422, "no rows"),
    ("csv date column", IMP, {"csv": "d,x\n2020-01-01,1\n2020-01-02,\n2020-01-03,3\n"}, 422, "dates"),
    ("impute samples 0", IMP, {"csv": "a\n1\n\n", "samples": 0}, 422, "samples"),
    ("impute samples 999", IMP, {"csv": "a\n1\n\n", "samples": 999}, 422, "samples"),
    ("impute steps over cap", IMP, {"csv": "a\n1\n\n", "steps": 50_000}, 422, "steps"),
    ("impute csv not text", IMP, {"csv": [1, 2]}, 422, "csv"),
    ("series both sources", SER, {"csv": "a\n1\n", "values": [[1.0]]}, 422, "either"),
    ("series ragged rows", SER, {"values": [[1.0], [1.0, 2.0]]}, 422, "same number"),
    ("series too many rows", SER, {"values": [[1.0]] * 2001}, 413, "2000"),
    ("series text column", SER, {"csv": "a,b\nx,1\ny,2\n"}, 422, "not numeric"),
    ("series window too small", SER, {"values": [[1.0]] * 20, "window": 4}, 422, "window"),
]


@pytest.mark.parametrize(("name", "path", "body", "status", "phrase"), CASES, ids=[c[0] for c in CASES])
def test_malformed(client: httpx.Client, name: str, path: str, body: Any, status: int, phrase: str) -> None:
    res = client.post(path, json=body)
    assert res.status_code == status, f"{name}: {res.status_code} {res.text[:300]}"
    detail = res.json()["detail"]
    assert isinstance(detail, str) and phrase.lower() in detail.lower(), f"{name}: {detail}"


def test_key_needed_and_still_serving(server: Server, client: httpx.Client) -> None:
    for path in (REC, IMP, SER):
        res = httpx.post(server.url + path, json={}, timeout=10)
        assert res.status_code == 401, path
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/v1/status").json()["queue"]["failed"] == 0
    assert len(CASES) >= 10


def test_work_stops_when_cancelled_or_late(digit: torch.Tensor) -> None:
    """In process: the worker functions check the job (a disconnect cancels it; the deadline times it out)."""
    import pandas as pd

    from diffsight.models import load_model
    from diffsight.serve.cancel import Cancelled, Job, TimedOut
    from diffsight.serve.schemas import ImputeRequest, ReconstructRequest, SeriesScoreRequest
    from diffsight.serve.task_jobs import parse_series, run_impute, run_reconstruct, run_series_score

    cancelled = Job(60.0)
    cancelled.cancel("the client disconnected")
    body = ReconstructRequest(model="digits", task="denoise", array=digit.tolist(), simulate=True, samples=2, steps=4)
    with pytest.raises(Cancelled, match="disconnected"):
        run_reconstruct(load_model("digits"), body, cancelled, max_side=64, max_bytes=1 << 20)
    frame = pd.DataFrame({"a": [1.0, 2.0, None, 4.0] * 5, "b": [2.0, None, 6.0, 8.0] * 5})
    with pytest.raises(TimedOut):
        run_impute(frame, ImputeRequest(csv="unused", steps=2000), Job(0.0))
    series = SeriesScoreRequest(values=[[float(i % 5)] for i in range(30)], window=8, steps=2000)
    with pytest.raises(Cancelled):
        run_series_score(parse_series(series), series, cancelled)
    done = run_impute(frame, ImputeRequest(csv="unused", steps=5, samples=2), Job(60.0))  # control: it can finish
    assert done["filled_cells"] == 10
