"""The service's parts without a server: config checks, the missing-extra message, the trace store's id gate,
image decoding (exact round trip of the server's own previews), the queue's admission and the CLI's checks."""

from __future__ import annotations

import asyncio
import base64
import io

import pytest
import torch

from diffsight.errors import DiffsightError
from diffsight.serve import ServeConfig, read_api_key, require_serve_extra
from diffsight.serve.cancel import CancellableDenoiser, Cancelled, Job, TimedOut
from diffsight.serve.images import decode_image
from diffsight.serve.render import image_uri
from diffsight.serve.store import TraceStore, is_trace_id
from diffsight.serve.work import QueueFull, WorkQueue

pytestmark = pytest.mark.usefixtures("one_thread")


class _Shrink(torch.nn.Module):
    """The optimal denoiser of N(0, I) data: x0_hat = x / (1 + sigma^2)."""

    sigma_min, sigma_max = 0.002, 80.0

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: object = None) -> torch.Tensor:
        return x / (1 + sigma.view(-1, 1, 1, 1) ** 2)


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a))
    with pytest.raises(DiffsightError, match=r"pip install 'diffsight\[serve\]'"):
        require_serve_extra()


@pytest.mark.parametrize(
    ("options", "phrase"),
    [
        ({"port": 0}, "port"),
        ({"max_queue": 0}, "max_queue"),
        ({"workers": 0}, "workers"),
        ({"timeout": 0}, "timeout"),
        ({"cors_origins": ("example.org/path",)}, "CORS"),
        ({"api_key": "short"}, "16"),
        ({"artifacts": " "}, "artifacts"),
    ],
)
def test_config_rejects_bad_values(options: dict[str, object], phrase: str) -> None:
    with pytest.raises(DiffsightError, match=phrase):
        ServeConfig(**options)  # type: ignore[arg-type]


def test_config_knows_loopback() -> None:
    assert ServeConfig(host="127.0.0.1").is_loopback and ServeConfig(host="::1").is_loopback
    assert not ServeConfig(host="0.0.0.0").is_loopback
    assert "kkkk" not in repr(ServeConfig(api_key="k" * 20))  # the key never reaches a log line


def test_api_key_file(tmp_path) -> None:  # noqa: ANN001
    good = tmp_path / "key"
    good.write_text("  s3cret-0123456789abcdef\n")
    assert read_api_key(good) == "s3cret-0123456789abcdef"
    (tmp_path / "short").write_text("abc")
    with pytest.raises(DiffsightError, match="at least 16"):
        read_api_key(tmp_path / "short")
    with pytest.raises(DiffsightError, match="cannot read"):
        read_api_key(tmp_path / "missing")


def test_trace_store_round_trip_and_id_gate(tmp_path) -> None:  # noqa: ANN001
    from diffsight.trace import record_trace

    with torch.no_grad():
        trace = record_trace(_Shrink(), seed=1, steps=3, event_shape=(1, 8, 8), model_id="shrink")
    store = TraceStore(str(tmp_path / "root"))
    store.check()
    assert store.put(trace) == trace.id
    assert (tmp_path / "root" / "traces" / f"{trace.id}.trace.safetensors").is_file()
    fresh = TraceStore(str(tmp_path / "root"))  # no cache: read from disk
    assert fresh.get(trace.id).id == trace.id
    for bad in ("../../etc/passwd", "0123456789ABCDEF", "0123456789abcde", "0123456789abcdef/..", "", None, 7):
        assert not is_trace_id(bad)
        with pytest.raises(DiffsightError, match="16 lowercase hex"):
            fresh.get_bytes(bad)  # type: ignore[arg-type]
    # negative control: a well-formed id that is not stored is "not found", not an id error
    with pytest.raises(DiffsightError, match="no trace"):
        fresh.get_bytes("0123456789abcdef")


def test_a_preview_decodes_back_to_the_same_pixels() -> None:
    x = torch.linspace(-1, 1, 64).reshape(1, 8, 8)
    x = ((x + 1) * 127.5).round() / 127.5 - 1  # on the 8-bit grid
    uri = image_uri(x)
    assert torch.equal(decode_image(uri, (1, 8, 8)), x)
    assert torch.equal(decode_image(uri.split(",", 1)[1], (1, 8, 8)), x)  # bare base64 works too
    rgb = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    rgb = ((rgb + 1) * 127.5).round() / 127.5 - 1
    assert torch.equal(decode_image(image_uri(rgb), (3, 16, 16)), rgb)
    # negative control: the wrong model resolution is refused, not silently resized
    with pytest.raises(DiffsightError, match="integer multiple"):
        decode_image(uri, (1, 28, 28))


def test_decode_refuses_what_is_not_an_image() -> None:
    from PIL import Image

    with pytest.raises(DiffsightError, match="base64"):
        decode_image("%%%", (1, 8, 8))
    with pytest.raises(DiffsightError, match="PNG or JPEG"):
        decode_image(base64.b64encode(b"GIF89a....").decode(), (1, 8, 8))
    buffer = io.BytesIO()
    Image.new("L", (2048, 8)).save(buffer, format="PNG")
    with pytest.raises(DiffsightError, match="up to 1024"):
        decode_image(base64.b64encode(buffer.getvalue()).decode(), (1, 8, 8))


def test_queue_admits_max_queue_then_refuses_with_retry_after() -> None:
    queue = WorkQueue(max_queue=2, workers=1, timeout=5.0)
    jobs = [queue.admit(), queue.admit()]
    with pytest.raises(QueueFull) as full:
        queue.admit()
    assert full.value.retry_after >= 1 and queue.status()["rejected"] == 1
    queue.release(jobs[0], "cancelled")
    queue.admit()  # a slot is free again

    async def run() -> int:
        return await queue.submit(jobs[1], lambda a, b: a + b, 2, b=3)

    assert asyncio.run(run()) == 5
    assert queue.status()["completed"] == 1
    queue.close(0.0)


def test_cancellable_denoiser_stops_at_the_next_evaluation() -> None:
    job = Job(timeout=60.0)
    d = CancellableDenoiser(_Shrink(), job)
    x = torch.ones(2, 1, 8, 8)
    assert torch.allclose(d(x, torch.ones(2)), x / 2)
    job.cancel("the client disconnected")
    with pytest.raises(Cancelled, match="disconnected"):
        d(x, torch.ones(2))
    with pytest.raises(TimedOut):
        Job(timeout=-1.0).check()


def test_cli_refuses_an_unknown_model_before_starting() -> None:
    from typer.testing import CliRunner

    from diffsight.cli.main import app

    result = CliRunner().invoke(app, ["serve", "--model", "no-such-model"])
    assert isinstance(result.exception, DiffsightError) and "no model called" in str(result.exception)


def test_cors_only_when_configured_and_preflight_needs_no_key(tmp_path) -> None:  # noqa: ANN001
    from fastapi.testclient import TestClient

    from diffsight.serve import create_app

    origin = "https://viewer.example.org"
    preflight = {"Origin": origin, "Access-Control-Request-Method": "POST"}
    key = "k" * 20
    with_cors = ServeConfig(models=("digits",), artifacts=str(tmp_path / "a"), cors_origins=(origin,), api_key=key)
    client = TestClient(create_app(with_cors))  # no lifespan: the models are not loaded, which CORS does not need
    res = client.options("/v1/generate", headers=preflight)
    assert res.status_code == 200 and res.headers["access-control-allow-origin"] == origin
    assert "authorization" in res.headers["access-control-allow-headers"].lower()
    other = client.options("/v1/generate", headers={**preflight, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    assert client.get("/v1/models", headers={"Origin": origin}).status_code == 401  # CORS is not a key
    # negative control: without --cors-origin the same preflight gets no CORS header at all
    plain = TestClient(create_app(ServeConfig(models=("digits",), artifacts=str(tmp_path / "b"))))
    assert "access-control-allow-origin" not in plain.options("/v1/generate", headers=preflight).headers
    assert plain.get("/readyz").status_code == 503  # not started: not ready, but it answers
