"""The offline-HTML harness itself: it sees nothing on an inline page and catches every kind of outside request.

Negative controls: an ``<img src="http://...">``, a ``fetch`` to http and to https, a delayed fetch and a
request to localhost are each recorded by the proxy, which answers 502 (the page's fetch fails), so none of
them reaches the network. Positive control: a script-rendered element appears in the dumped DOM.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from browser import (
    RecordingProxy,
    chromium_path,
    external_references,
    free_port,
    link_targets,
    open_offline,
    request_host,
    requires_chromium,
)

# A 1x1 red PNG, inline.
_RED_PIXEL = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d49484452000000010000000108020000009077"
        "53de0000000c4944415408d763f8cfc000000301010018dd8db00000000049454e44ae426082"
    )
).decode()

INLINE_PAGE = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>inline</title>
<style>body {{ background: url(data:image/png;base64,{_RED_PIXEL}); }} .k {{ color: #335; }}</style></head>
<body><h1 class="k">inline only</h1><img alt="dot" src="data:image/png;base64,{_RED_PIXEL}">
<svg width="40" height="20"><polyline points="0,20 20,0 40,10" fill="none" stroke="black"/></svg>
<a href="#top">top</a> <a href="https://example.org/docs">docs (a link, never loaded)</a>
<div id="target">not rendered</div>
<script>document.getElementById("target").textContent = "rendered by script " + (6 * 7);</script>
</body></html>
"""


def write(tmp_path: Path, name: str, html: str) -> Path:
    path = tmp_path / name
    path.write_text(html, encoding="utf-8")
    return path


@requires_chromium
def test_inline_page_makes_no_request_and_runs_scripts(tmp_path: Path) -> None:
    page = write(tmp_path, "inline.html", INLINE_PAGE)
    result = open_offline(page, screenshot=tmp_path / "inline.png", window_size=(400, 300))
    assert result.requests == [], result.requests
    assert "rendered by script 42" in result.dom  # scripts ran (positive control)
    assert result.screenshot is not None and result.screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert external_references(INLINE_PAGE) == []
    assert link_targets(INLINE_PAGE) == ["https://example.org/docs"]


@requires_chromium
def test_image_and_fetches_are_caught_by_the_proxy(tmp_path: Path) -> None:
    """Negative control: every outside request of the page reaches the proxy (502) and nothing else."""
    port = free_port()
    html = f"""<!doctype html><html><body>
<img src="http://example.invalid/x.png">
<p id="status">pending</p>
<script>
const show = text => {{ document.getElementById("status").textContent = text; }};
fetch("http://example.invalid/api").then(r => show("status " + r.status), e => show("fetch failed"));
fetch("https://secure.invalid/data.json").catch(() => {{}});
new Image().src = "http://localhost:{port}/loopback.png";
setTimeout(() => fetch("http://late.invalid/t").catch(() => {{}}), 1500);
</script></body></html>"""
    result = open_offline(write(tmp_path, "leaky.html", html))
    hosts = {request_host(r) for r in result.requests}
    assert {"example.invalid", "secure.invalid", "localhost", "late.invalid"} <= hosts, result.requests
    assert "GET http://example.invalid/x.png" in result.requests
    assert "GET http://example.invalid/api" in result.requests
    assert "CONNECT secure.invalid:443" in result.requests
    # The proxy's 502 is all the page got: fetch resolves to a 502 response or fails, never a real answer.
    assert ("status 502" in result.dom) or ("fetch failed" in result.dom), result.dom
    # The static check sees the <img>, not what the script asks for: that is why a browser runs.
    assert external_references(html) == ["http://example.invalid/x.png"]


def test_external_references_finds_every_kind_of_reference() -> None:
    html = """<link rel="stylesheet" href="https://cdn.example/x.css">
<script src='//cdn.example/lib.js'></script><img srcset="a.png 1x, data:image/png;base64,AA 2x">
<style>@import "https://fonts.example/f.css"; div { background: url('http://img.example/b.png') }</style>
<iframe src=page.html></iframe><a href="http://example.org">link</a><img src="data:image/png;base64,AA">
<a href="javascript:void(0)">x</a><use xlink:href="#icon"/><div style="background:url(http://inline.example/c.png)">
</div>"""
    assert external_references(html) == [
        "https://cdn.example/x.css",
        "//cdn.example/lib.js",
        "a.png",
        "http://img.example/b.png",
        "https://fonts.example/f.css",
        "page.html",
        "http://inline.example/c.png",
    ]
    assert link_targets(html) == ["http://example.org"]
    # Escaped markup is text, not a reference.
    assert external_references("<p>&lt;img src=&quot;http://x.example/a.png&quot;&gt;</p>") == []


def test_proxy_records_and_refuses() -> None:
    """The proxy itself, without a browser: a plain GET through it gets 502 and is recorded."""
    import http.client

    with RecordingProxy() as proxy:
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
        conn.request("GET", "http://example.invalid/file.png")
        response = conn.getresponse()
        assert response.status == 502
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
        conn.request("CONNECT", "secure.invalid:443")
        assert conn.getresponse().status == 502
        conn.close()
        assert proxy.requests == ["GET http://example.invalid/file.png", "CONNECT secure.invalid:443"]


@pytest.mark.parametrize(
    ("line", "host"),
    [("GET http://a.example:81/x", "a.example"), ("CONNECT b.example:443", "b.example"), ("CONNECT [::1]:443", "::1")],
)
def test_request_host(line: str, host: str) -> None:
    assert request_host(line) == host


def test_missing_browser_is_reported_not_guessed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A DIFFSIGHT_CHROMIUM that does not exist means no browser (the tests then skip), not a fallback."""
    monkeypatch.setenv("DIFFSIGHT_CHROMIUM", "/nonexistent/chromium")
    assert chromium_path() is None
