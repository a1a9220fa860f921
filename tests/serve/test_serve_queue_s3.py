"""Artifacts on object storage, the bounded queue, the time limit and graceful shutdown, against one real server.

The test starts moto's S3 server on 127.0.0.1 (a free port, in this process) and ``diffsight serve
--artifacts s3://.../artifacts --max-queue 1 --workers 1 --timeout 4 --shutdown-grace 1`` pointed at it through
``AWS_ENDPOINT_URL_S3``. Then: traces land in the bucket and are read back from it; with one request running a
second gets 503 and ``Retry-After``; the running stream ends with a 504 ``error`` event at its time limit;
SIGTERM during a run cancels it and the process exits cleanly.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator

import httpx
import pytest
import torch
from serve_process import Server, sse_events, start_server

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

BUCKET = "diffsight-test"
LONG = {"model": "digits", "steps": 1000, "sampler": "euler"}  # seconds of work: cut by the 4 s limit


@pytest.fixture(scope="module")
def s3_env() -> Iterator[dict[str, str]]:
    pytest.importorskip("s3fs", reason="the cloud extra is not installed: pip install 'diffsight[cloud]'")
    server_module = pytest.importorskip("moto.server", reason="moto[server] is not installed")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    moto = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": f"http://{host}:{port}",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    s3fs.S3FileSystem().mkdir(BUCKET)
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    s3fs.S3FileSystem.clear_instance_cache()
    moto.stop()


@pytest.fixture(scope="module")
def server(s3_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    args = ["--max-queue", "1", "--workers", "1", "--timeout", "4", "--shutdown-grace", "1"]
    server = start_server(tmp_path_factory.mktemp("serve-s3"), args, env=s3_env, artifacts=f"s3://{BUCKET}/artifacts")
    yield server
    server.stop()


class _Shrink(torch.nn.Module):
    """The optimal denoiser of N(0, I) data: x0_hat = x / (1 + sigma^2)."""

    sigma_min, sigma_max = 0.002, 80.0

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: object = None) -> torch.Tensor:
        return x / (1 + sigma.view(-1, 1, 1, 1) ** 2)


def _s3():  # noqa: ANN202 - s3fs has no stubs
    import s3fs

    return s3fs.S3FileSystem()


def test_traces_are_stored_in_the_bucket_and_read_from_it(server: Server) -> None:
    from diffsight.trace import record_trace
    from diffsight.trace.io import trace_to_bytes

    with server.client() as client:
        out = client.post("/v1/generate", json={"model": "digits", "seed": 9, "steps": 4}).json()
        key = f"{BUCKET}/artifacts/traces/{out['trace_id']}.trace.safetensors"
        fs = _s3()
        assert fs.exists(key)
        assert client.get(f"/v1/traces/{out['trace_id']}").content == fs.cat_file(key)
        # a trace put into the bucket by someone else is served from there (it is in no cache of the server)
        with torch.no_grad():
            trace = record_trace(_Shrink(), seed=11, steps=3, event_shape=(1, 8, 8), model_id="shrink")
        fs.pipe_file(f"{BUCKET}/artifacts/traces/{trace.id}.trace.safetensors", trace_to_bytes(trace))
        frames = client.get(f"/v1/traces/{trace.id}/frames")
        assert frames.status_code == 200 and frames.json()["num_steps"] == 3
        # nothing outside the artifact root can be named
        assert client.get("/v1/traces/..%2F..%2Fartifacts").status_code == 404
        assert client.get("/v1/traces/0123456789abcdef").status_code == 404


def test_full_queue_gets_503_and_the_time_limit_ends_the_stream(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        with client.stream("POST", "/v1/generate/stream", json=LONG) as res:
            events = sse_events(res.iter_lines())
            assert next(events)[0] == "start"
            assert next(events)[0] == "step"  # the one admitted request is running
            busy = client.post("/v1/generate", json={"model": "digits", "steps": 2})
            assert busy.status_code == 503, busy.text
            assert int(busy.headers["retry-after"]) >= 1 and "busy" in busy.json()["detail"]
            busy_stream = client.post("/v1/generate/stream", json={"model": "digits", "steps": 2})
            assert busy_stream.status_code == 503 and "retry-after" in busy_stream.headers
            rest = list(events)
        kind, data, _ = rest[-1]
        assert kind == "error" and data["status"] == 504 and "limit" in data["detail"], rest[-1]
        assert sum(e == "step" for e, _, _ in rest) < 999
        # the slot is free again
        deadline = time.monotonic() + 10
        while client.get("/v1/status").json()["queue"]["admitted"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.post("/v1/generate", json={"model": "digits", "steps": 2}).status_code == 200
        assert client.get("/v1/status").json()["queue"]["timed_out"] >= 1


def test_sigterm_cancels_running_work_and_exits_cleanly(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        with client.stream("POST", "/v1/generate/stream", json=LONG) as res:
            events = sse_events(res.iter_lines())
            assert next(events)[0] == "start" and next(events)[0] == "step"
            stopped = time.monotonic()
            server.proc.terminate()
            try:
                rest = list(events)
            except httpx.HTTPError:  # the connection closed mid-event: also an end
                rest = []
        assert not rest or rest[-1][0] in ("error", "step")
        assert all(kind != "final" for kind, _, _ in rest)
    # uvicorn shuts down gracefully, then re-raises the signal it caught: the exit status is SIGTERM's
    assert server.proc.wait(20) in (0, -15), server.log_tail()
    assert time.monotonic() - stopped < 10
    assert "Application shutdown complete" in server.log_tail()
