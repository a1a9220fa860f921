"""Bad input against the real server: each of 60 malformed requests gets the right 4xx and a message that says
what is wrong, and the server goes on serving.

Wrong types, out-of-range and huge numbers, negative sizes, broken base64 and images (truncated, wrong
size, a header declaring 5000x5000 pixels), oversized bodies (declared and chunked), path-traversal ids,
damaged and tampered trace files, and missing or wrong API keys.
"""

from __future__ import annotations

import base64
import io
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from serve_process import API_KEY, Server, shared_server

pytestmark = pytest.mark.slow

GEN = "/v1/generate"


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Server:
    return shared_server(request, tmp_path_factory, key=API_KEY)


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def _png(width: int, height: int, mode: str = "L") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, (width, height), 128).save(buffer, format="PNG")
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose valid header claims ``width`` x ``height`` pixels, with almost no pixel data behind it."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _score(images: Any, **more: Any) -> dict[str, Any]:
    return {"model": "digits", "images": images, **more}


# (name, method, path, request options, expected status, a phrase the detail must contain)
JSON_CASES: list[tuple[str, str, str, dict[str, Any], int, str]] = [
    ("steps as string", "POST", GEN, {"json": {"model": "digits", "steps": "5"}}, 422, "steps"),
    ("steps zero", "POST", GEN, {"json": {"model": "digits", "steps": 0}}, 422, "steps"),
    ("steps over limit", "POST", GEN, {"json": {"model": "digits", "steps": 1001}}, 422, "1000"),
    ("steps huge", "POST", GEN, {"json": {"model": "digits", "steps": 10**30}}, 422, "steps"),
    ("steps fractional", "POST", GEN, {"json": {"model": "digits", "steps": 2.5}}, 422, "steps"),
    ("n zero", "POST", GEN, {"json": {"model": "digits", "n": 0}}, 422, "n:"),
    ("n over limit", "POST", GEN, {"json": {"model": "digits", "n": 17}}, 422, "n:"),
    ("n negative", "POST", GEN, {"json": {"model": "digits", "n": -3}}, 422, "n:"),
    ("seed negative", "POST", GEN, {"json": {"model": "digits", "seed": -1}}, 422, "seed"),
    ("seed huge", "POST", GEN, {"json": {"model": "digits", "seed": 2**70}}, 422, "seed"),
    ("guidance too big", "POST", GEN, {"json": {"model": "digits", "guidance": 21.0, "label": 1}}, 422, "guidance"),
    ("guidance negative", "POST", GEN, {"json": {"model": "digits", "guidance": -1, "label": 1}}, 422, "guidance"),
    ("guidance NaN", "POST", GEN, {"content": b'{"model":"digits","label":1,"guidance":NaN}'}, 422, "guidance"),
    ("guidance infinite", "POST", GEN, {"content": b'{"model":"digits","label":1,"guidance":1e999}'}, 422, "finite"),
    ("guidance without class", "POST", GEN, {"json": {"model": "digits", "guidance": 3.0}}, 422, "label"),
    ("label out of range", "POST", GEN, {"json": {"model": "digits", "label": 10}}, 422, "0..9"),
    ("label negative", "POST", GEN, {"json": {"model": "digits", "label": -1}}, 422, "label"),
    ("label as string", "POST", GEN, {"json": {"model": "digits", "label": "3"}}, 422, "label"),
    ("unknown model", "POST", GEN, {"json": {"model": "imagenet"}}, 422, "digits"),
    ("model missing", "POST", GEN, {"json": {"steps": 3}}, 422, "model"),
    ("model name huge", "POST", GEN, {"json": {"model": "x" * 10_000}}, 422, "model"),
    ("unknown sampler", "POST", GEN, {"json": {"model": "digits", "sampler": "plms"}}, 422, "dpmpp_2m"),
    ("misspelt field", "POST", GEN, {"json": {"model": "digits", "stpes": 3}}, 422, "stpes"),
    ("body is a list", "POST", GEN, {"json": [1, 2, 3]}, 422, "object"),
    ("body not JSON", "POST", GEN, {"content": b'{"model": "digits",'}, 400, "JSON"),
    ("body empty", "POST", GEN, {"content": b""}, 422, "body"),
    ("body deeply nested", "POST", GEN, {"content": b"[" * 100_000 + b"]" * 100_000}, 400, "body"),
    ("wrong content type", "POST", GEN, {"content": b"model=digits", "ctype": "text/plain"}, 415, "application/json"),
    ("stream: steps negative", "POST", "/v1/generate/stream", {"json": {"model": "digits", "steps": -5}}, 422, "steps"),
    (
        "explain: both sources",
        "POST",
        "/v1/explain",
        {"json": {"trace_id": "0" * 16, "model": "digits"}},
        422,
        "either",
    ),
    ("explain: no source", "POST", "/v1/explain", {"json": {"k": 4}}, 422, "trace_id"),
    ("explain: traversal id", "POST", "/v1/explain", {"json": {"trace_id": "../../etc/passwd"}}, 422, "trace_id"),
    ("explain: k too small", "POST", "/v1/explain", {"json": {"model": "digits", "k": 1}}, 422, "k:"),
    ("explain: k too big", "POST", "/v1/explain", {"json": {"model": "digits", "k": 65}}, 422, "k:"),
    (
        "explain: attribution not bool",
        "POST",
        "/v1/explain",
        {"json": {"model": "digits", "attribution": "yes"}},
        422,
        "attribution",
    ),
    ("explain: sample out of run", "POST", "/v1/explain", {"json": {"model": "digits", "sample": 3}}, 422, "sample"),
    ("explain: unknown trace", "POST", "/v1/explain", {"json": {"trace_id": "0123456789abcdef"}}, 404, "no trace"),
    ("score: no images", "POST", "/v1/score", {"json": _score([])}, 422, "images"),
    ("score: too many images", "POST", "/v1/score", {"json": _score(["AAAA"] * 17)}, 422, "images"),
    ("score: images not a list", "POST", "/v1/score", {"json": _score("AAAA")}, 422, "images"),
    ("score: broken base64", "POST", "/v1/score", {"json": _score(["@@not base64@@"])}, 422, "base64"),
    ("score: not an image", "POST", "/v1/score", {"json": _score([_b64(b"hello, world")])}, 422, "PNG"),
    ("score: truncated PNG", "POST", "/v1/score", {"json": _score([_b64(_png(8, 8)[:40])])}, 422, "damaged"),
    ("score: wrong size", "POST", "/v1/score", {"json": _score([_b64(_png(7, 7))])}, 422, "multiple"),
    (
        "score: huge declared size",
        "POST",
        "/v1/score",
        {"json": _score([_b64(_png_header_only(5000, 5000))])},
        422,
        "1024",
    ),
    (
        "score: gif data URI",
        "POST",
        "/v1/score",
        {"json": _score(["data:image/gif;base64," + _b64(b"GIF89a")])},
        422,
        "image/png",
    ),
    ("score: label out of range", "POST", "/v1/score", {"json": _score([_b64(_png(8, 8))], label=11)}, 422, "label"),
    ("trace id with traversal", "GET", "/v1/traces/..%2F..%2Fetc%2Fpasswd", {}, 404, "no such endpoint"),
    ("trace id uppercase", "GET", "/v1/traces/0123456789ABCDEF", {}, 400, "16 lowercase hex"),
    ("trace id too long", "GET", "/v1/traces/0123456789abcdef0", {}, 400, "16 lowercase hex"),
    ("trace id dots", "GET", "/v1/traces/..", {}, 404, ""),
    ("trace not stored", "GET", "/v1/traces/0123456789abcdef", {}, 404, "no trace"),
    ("frames: sample negative", "GET", "/v1/traces/0123456789abcdef/frames?sample=-1", {}, 422, "sample"),
    ("frames: sample not a number", "GET", "/v1/traces/0123456789abcdef/frames?sample=abc", {}, 422, "sample"),
    (
        "upload: not a trace",
        "POST",
        "/v1/traces",
        {"content": b"\x00" * 64, "ctype": "application/octet-stream"},
        400,
        "not a diffsight trace",
    ),
    ("upload: empty", "POST", "/v1/traces", {"content": b"", "ctype": "application/octet-stream"}, 400, "empty"),
    ("upload: JSON content type", "POST", "/v1/traces", {"json": {"trace": 1}}, 415, "application/octet-stream"),
    ("unknown endpoint", "GET", "/v1/nothing-here", {}, 404, "no such endpoint"),
    ("wrong method", "DELETE", GEN, {}, 405, "not allowed"),
]


@pytest.mark.parametrize(
    ("method", "path", "options", "status", "phrase"), [c[1:] for c in JSON_CASES], ids=[c[0] for c in JSON_CASES]
)
def test_malformed_request_gets_a_clear_4xx(
    client: httpx.Client, method: str, path: str, options: dict[str, Any], status: int, phrase: str
) -> None:
    options = dict(options)
    headers = {}
    if "content" in options:
        headers["Content-Type"] = options.pop("ctype", "application/json")
    res = client.request(method, path, headers=headers, **options)
    assert res.status_code == status, res.text[:300]
    detail = res.json()["detail"]
    assert isinstance(detail, str) and detail, res.text[:300]
    assert phrase.lower() in detail.lower(), detail


def test_damaged_and_tampered_trace_uploads_are_refused(client: httpx.Client) -> None:
    trace_id = client.post(GEN, json={"model": "digits", "steps": 3}).json()["trace_id"]
    data = client.get(f"/v1/traces/{trace_id}").content
    octet = {"Content-Type": "application/octet-stream"}
    truncated = client.post("/v1/traces", content=data[: len(data) // 2], headers=octet)
    assert truncated.status_code == 400 and "damaged" in truncated.json()["detail"]
    tampered = bytearray(data)
    tampered[-5] ^= 0xFF  # a bit of the last tensor: the content hash no longer matches
    res = client.post("/v1/traces", content=bytes(tampered), headers=octet)
    assert res.status_code == 400 and "hash" in res.json()["detail"]


def test_oversized_bodies_are_refused_declared_or_streamed(server: Server, client: httpx.Client) -> None:
    big = b'{"model": "digits", "pad": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    declared = client.post(GEN, content=big, headers={"Content-Type": "application/json"})
    assert declared.status_code == 413 and "limit" in declared.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server counts while reading
        for i in range(0, len(big), 65536):
            yield big[i : i + 65536]

    streamed = client.post(GEN, content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413 and "limit" in streamed.json()["detail"]


@pytest.mark.parametrize(
    ("authorization", "phrase"),
    [
        (None, "needs an API key"),
        ("Bearer wrong-key-0123456789", "wrong API key"),
        ("Basic dXNlcjpwYXNz", "Bearer"),
        ("Bearer", "Bearer"),
        (f"Bearer {API_KEY}x", "wrong API key"),
        (f"bearer {API_KEY[:-1]}", "wrong API key"),
    ],
    ids=["missing", "wrong", "basic scheme", "empty token", "longer key", "shorter key"],
)
def test_missing_or_wrong_key_is_401(server: Server, authorization: str | None, phrase: str) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in (("GET", "/v1/models"), ("POST", GEN), ("GET", "/v1/traces/0123456789abcdef")):
        res = httpx.request(method, f"{server.url}{path}", headers=headers, json={"model": "digits"})
        assert res.status_code == 401 and phrase.lower() in res.json()["detail"].lower(), res.text


def test_the_server_still_serves_after_all_that(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    out = client.post(GEN, json={"model": "digits", "steps": 4})
    assert out.status_code == 200 and len(out.json()["trace_id"]) == 16
    status = client.get("/v1/status").json()["queue"]
    assert status["failed"] == 0, status  # no request reached a bug
