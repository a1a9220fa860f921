"""The HTTP API against the real server process (``diffsight serve --model digits`` with an API key) on loopback.

Covers every endpoint of docs/serve.md: health, models, generate, the event stream (steps arrive one by one,
in order, before the run ends), frames, trace download and upload (byte-exact round trip), explain, score
(a generated image read back exactly), the OpenAPI page, the viewer's files, no CORS by default, and a
client that disconnects mid-stream cancelling its work.
"""

from __future__ import annotations

import base64
import io
import time

import httpx
import numpy as np
import pytest
from serve_process import API_KEY, Server, shared_server, sse_events

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Server:
    return shared_server(request, tmp_path_factory, key=API_KEY)


@pytest.fixture(scope="module")
def client(server: Server) -> httpx.Client:
    with server.client() as c:
        yield c


def _png_pixels(uri: str) -> np.ndarray:
    from PIL import Image

    assert uri.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


def test_health_is_public_and_the_api_is_not(server: Server) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz").json()
    assert ready == {"status": "ready", "models": ["digits"]}
    denied = httpx.get(f"{server.url}/v1/models")
    assert denied.status_code == 401 and "Bearer" in denied.json()["detail"]
    assert denied.headers["www-authenticate"].startswith("Bearer")


def test_models(client: httpx.Client) -> None:
    (model,) = client.get("/v1/models").json()["models"]
    assert model["name"] == "digits" and model["event_shape"] == [1, 8, 8]
    assert model["num_classes"] == 10 and model["null_class"] == 10 and len(model["class_names"]) == 10
    assert "dpmpp_2m" in model["samplers"] and model["default_sampler"] == "dpmpp_2m"
    assert model["default_steps"] == 20 and model["max_steps"] == 1000


def test_generate_stores_a_trace_that_downloads_and_uploads_byte_exact(client: httpx.Client, server: Server) -> None:
    from diffsight.trace.io import trace_from_bytes

    out = client.post("/v1/generate", json={"model": "digits", "seed": 3, "steps": 6, "n": 2, "label": 7}).json()
    assert len(out["images"]) == 2 and out["steps"] == 6 and out["nfe"] >= 6
    assert _png_pixels(out["images"][0]).shape == (64, 64)  # 8x8 drawn at 8x
    trace_id = out["trace_id"]
    assert len(trace_id) == 16
    data = client.get(f"/v1/traces/{trace_id}")
    assert data.status_code == 200 and data.headers["content-type"] == "application/octet-stream"
    trace = trace_from_bytes(data.content)
    assert trace.id == trace_id and trace.meta["seed"] == 3 and trace.meta["labels"] == [7, 7]
    up = client.post("/v1/traces", content=data.content, headers={"Content-Type": "application/octet-stream"})
    assert up.status_code == 201 and up.json()["trace_id"] == trace_id
    # the same request gives the same trace (the id is a content hash of the run)
    again = client.post("/v1/generate", json={"model": "digits", "seed": 3, "steps": 6, "n": 2, "label": 7}).json()
    assert again["trace_id"] == trace_id


def test_stream_sends_each_step_as_it_happens_in_order(client: httpx.Client) -> None:
    steps = 40
    body = {"model": "digits", "seed": 1, "steps": steps, "sampler": "heun"}
    sent = time.monotonic()
    with client.stream("POST", "/v1/generate/stream", json=body) as res:
        assert res.status_code == 200 and res.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(res.iter_lines()))
    kinds = [e for e, _, _ in events]
    assert kinds == ["start"] + ["step"] * steps + ["final"]
    start = events[0][1]
    assert start["steps"] == steps and start["sampler"] == "heun" and start["seed"] == 1
    step_events = [(d, t) for e, d, t in events if e == "step"]
    assert [d["index"] for d, _ in step_events] == list(range(steps))
    sigmas = [d["sigma"] for d, _ in step_events]
    assert all(a > b for a, b in zip(sigmas, sigmas[1:], strict=False)) and step_events[-1][0]["sigma_next"] == 0
    assert all(d["num_steps"] == steps and d["preview"].startswith("data:image/png;base64,") for d, _ in step_events)
    assert [d["nfe"] for d, _ in step_events] == sorted(d["nfe"] for d, _ in step_events)
    assert set(step_events[0][0]["scalars"]) >= {"x0_change", "x_rms"}
    # incremental: the steps arrive spread over the run (sampling is most of it), not in one burst at its end
    times = [t for _, t in step_events]
    total = events[-1][2] - sent
    assert times[-1] - times[0] > 0.4 * total, (
        f"steps arrived within {times[-1] - times[0]:.3f} s of a {total:.3f} s run"
    )
    distinct = len({round(t, 3) for t in times})
    assert distinct > steps // 4, f"steps arrived in bursts: {distinct} distinct arrival times"
    final = events[-1][1]
    assert len(final["trace_id"]) == 16 and final["image"].startswith("data:image/png;base64,")
    # the last preview is the final sample's x0_hat; the final image is the sample itself
    frames = client.get(f"/v1/traces/{final['trace_id']}/frames").json()
    assert frames["num_steps"] == steps and len(frames["steps"]) == steps


def test_frames(client: httpx.Client) -> None:
    out = client.post("/v1/generate", json={"model": "digits", "seed": 5, "steps": 5, "label": 2}).json()
    frames = client.get(f"/v1/traces/{out['trace_id']}/frames", params={"sample": 0}).json()
    assert frames["trace_id"] == out["trace_id"] and frames["model"] == "digits" and frames["label"] == 2
    assert [s["index"] for s in frames["steps"]] == list(range(5))
    for s in frames["steps"]:
        assert {"index", "sigma", "x", "x0_hat", "change"} <= set(s)
        assert _png_pixels(s["change"]).shape == (64, 64, 3)
    assert frames["final"] == out["images"][0]
    bad = client.get(f"/v1/traces/{out['trace_id']}/frames", params={"sample": 1})
    assert bad.status_code == 422 and "sample" in bad.json()["detail"]


def test_explain_a_stored_trace_and_a_new_run(client: httpx.Client) -> None:
    out = client.post("/v1/generate", json={"model": "digits", "seed": 2, "steps": 8, "label": 4, "guidance": 2.0})
    trace_id = out.json()["trace_id"]
    explained = client.post("/v1/explain", json={"trace_id": trace_id, "k": 2, "attribution": False}).json()
    assert explained["trace_id"] == trace_id and explained["narrative"]
    assert {"filmstrip", "commitment", "guidance"} <= set(explained["explanations"])
    assert "attribution" not in explained["explanations"]
    curve = explained["curves"]["filmstrip"]
    assert curve["x"] == list(range(8)) and all(len(v) == 8 for v in curve["series"].values())
    assert len(explained["maps"]["guidance"]["images"]) == 8 and explained["summaries"]["guidance"]
    assert "values" not in explained["explanations"]["filmstrip"]
    fresh = client.post("/v1/explain", json={"model": "digits", "steps": 4, "k": 2, "attribution": False}).json()
    assert len(fresh["trace_id"]) == 16 and fresh["narrative"]
    assert client.get(f"/v1/traces/{fresh['trace_id']}").status_code == 200  # the run was stored


def test_score_reads_back_a_generated_image_exactly(client: httpx.Client) -> None:
    from diffsight.serve.images import decode_image

    out = client.post("/v1/generate", json={"model": "digits", "seed": 4, "steps": 6}).json()
    image = out["images"][0]
    x = decode_image(image, (1, 8, 8))
    assert np.array_equal(_png_pixels(image)[::8, ::8], ((x[0] + 1) * 127.5).round().numpy().astype(np.uint8))
    scored = client.post("/v1/score", json={"model": "digits", "images": [image, image.split(",", 1)[1]], "points": 16})
    assert scored.status_code == 200, scored.text
    rows = scored.json()["scores"]
    assert len(rows) == 2 and all(np.isfinite(r["bits_per_dim"]) for r in rows)
    assert rows[0]["map"].startswith("data:image/png;base64,") and scored.json()["levels"] == 256


def test_docs_viewer_and_no_cors(server: Server, client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/v1/generate", "/v1/generate/stream", "/v1/explain", "/v1/score", "/v1/traces/{trace_id}"} <= set(
        spec["paths"]
    )
    assert client.get("/docs").status_code == 200
    assert httpx.get(f"{server.url}/docs").status_code == 401  # the docs need the key like the API
    page = httpx.get(f"{server.url}/")  # the viewer is public: it asks for the key itself
    assert page.status_code in (200, 404)
    if page.status_code == 200:
        assert "text/html" in page.headers["content-type"]
    preflight = httpx.options(
        f"{server.url}/v1/models",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    res = client.get("/v1/models", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in res.headers


def test_a_client_that_disconnects_cancels_its_work(server: Server, client: httpx.Client) -> None:
    before = client.get("/v1/status").json()["queue"]
    body = {"model": "digits", "steps": 1000, "sampler": "euler"}
    with httpx.Client(base_url=server.url, headers=server.headers(), timeout=30) as own:
        with own.stream("POST", "/v1/generate/stream", json=body) as res:
            seen = 0
            for event, _data, _t in sse_events(res.iter_lines()):
                seen += event == "step"
                if seen == 3:
                    break
    # the connection is closed: the server cancels the run within a few network evaluations (it would take
    # seconds to finish 1000 steps)
    closed = time.monotonic()
    while time.monotonic() < closed + 15:
        queue = client.get("/v1/status").json()["queue"]
        if queue["cancelled"] > before["cancelled"] and queue["admitted"] == 0:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the run was not cancelled: {queue}")
    assert queue["completed"] == before["completed"], "the run finished instead of being cancelled"
    assert time.monotonic() - closed < 5.0
    assert client.get("/healthz").status_code == 200
