"""The web viewer (issue 8, part 2) in a real browser against the real server.

The test starts ``diffsight serve --model digits`` as a process on a free loopback port, opens ``/`` in
Debian's Chromium driven by Playwright (never ``playwright install``: no browser download), and does what a
person would: starts a streamed generation and watches the frames arrive one by one, waits for the end,
scrubs the finished trace with the slider (the images must change), overlays the change map, reads the
explanation (curves drawn as SVG with a marker at the slider's step, narrative, guidance overlay), opens the
trace again as a file, and sees a server 4xx's ``detail`` shown on the page. A screenshot at 1280x800 lands in
the pytest tmp dir. Every request the page makes is recorded with ``page.on("request")``: only the server
itself (``http://127.0.0.1:<port>/``) is allowed, so the viewer works with no CDN, font or other outside host.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian's chromium is not installed at /usr/bin/chromium (run `make browser`, i.e. apt-get install "
        "chromium, as root): the viewer's browser test needs a real browser",
    ),
]

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed: pip install -e '.[dev]' (never `playwright install`)"
)

# Chromium's own traffic (updates, sync, QUIC probes) off; every host name but loopback resolves to nothing, so a
# request to anywhere else fails at once (it is still seen by page.on("request"), which is what the test checks).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
STEPS = 30
TIMEOUT_MS = 60_000  # a ceiling for a loaded CI machine; each wait returns as soon as its condition holds


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as res:  # noqa: S310 - loopback test server
            return res.status, res.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``diffsight serve --model digits`` on a free loopback port; yields its base URL once /readyz says ready."""
    root = tmp_path_factory.mktemp("viewer-server")
    port = _free_port()
    log = (root / "server.log").open("wb")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "diffsight",
        "serve",
        "--model",
        "digits",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--artifacts",
        str(root / "artifacts"),
    ]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # 5-25 s here (the models load in the background)
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited with {proc.returncode}:\n{(root / 'server.log').read_text()[-3000:]}")
            try:
                if _get(base + "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server was not ready in 120 s:\n{(root / 'server.log').read_text()[-3000:]}")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


def _src(page: Any, selector: str) -> str:
    return str(page.eval_on_selector(selector, "el => el.getAttribute('src') || ''"))


# Records every change of the frame counter with the time it happened: one entry per task in which the page
# updated it, so frames that arrive one by one give many entries, a result dumped at once gives one.
WATCH_FRAMES = """() => {
  window.__frames = [];
  const el = document.getElementById('frame-count');
  new MutationObserver(() => window.__frames.push([performance.now(), Number(el.dataset.count)]))
    .observe(el, {attributes: true, attributeFilter: ['data-count']});
}"""

UNNAMED_CONTROLS = """() => [...document.querySelectorAll('input, select, button, progress')]
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.textContent.trim())
  .map(el => el.id || el.outerHTML.slice(0, 60))"""
FRAMES = "Number(document.getElementById('frame-count').dataset.count)"
ERROR_SHOWN = "!document.getElementById('error').hidden"

# The step of every slider marker that is shown in the curves.
VISIBLE_MARKERS = "ms => ms.filter(m => m.getAttribute('visibility') === 'visible').map(m => m.dataset.step)"


def exercise_viewer(page: Any, base: str, shots: Path, *, explain: bool = True) -> dict[str, Any]:
    """Drive the viewer at ``base`` like a person; assert what they would see; return figures for the report."""
    figures: dict[str, Any] = {}
    page.goto(base + "/")
    page.wait_for_function("document.querySelectorAll('#model option').length > 0", timeout=TIMEOUT_MS)
    assert page.input_value("#model") == "digits"
    assert page.is_hidden("#error"), page.inner_text("#error")
    # every control has an accessible name (a <label>, or aria-label); the test finds them by it
    unnamed = page.evaluate(UNNAMED_CONTROLS)
    assert unnamed == [], f"controls without a label: {unnamed}"
    page.get_by_label("Steps", exact=True).fill(str(STEPS))
    page.get_by_label("Seed", exact=True).fill("3")
    page.get_by_label("Class", exact=True).select_option("3")
    page.get_by_label("Continuations k").fill("4")
    if not explain:
        page.uncheck("#auto-explain")

    # 1. stream: the frame counter grows one step at a time while the preview is shown large
    page.evaluate(WATCH_FRAMES)
    t0 = time.monotonic()
    page.click("#generate")
    page.wait_for_function(f"{FRAMES} >= 3 || {ERROR_SHOWN}", timeout=TIMEOUT_MS)
    assert page.is_hidden("#error"), page.inner_text("#error")
    assert page.is_visible("#img-x0") and _src(page, "#img-x0").startswith("data:image/png;base64,")
    page.wait_for_function(f"!document.getElementById('slider').disabled || {ERROR_SHOWN}", timeout=TIMEOUT_MS)
    figures["generate_s"] = round(time.monotonic() - t0, 2)
    assert page.is_hidden("#error"), page.inner_text("#error")
    seen = page.evaluate("window.__frames")
    counts = [c for _, c in seen if c > 0]
    assert counts == sorted(counts) and counts[-1] == STEPS, counts
    assert len(set(counts)) >= 3, f"the frames did not arrive one by one: counter updates {counts}"
    figures["counter_updates"] = len(set(counts))
    assert page.eval_on_selector("#progress", "p => p.value === p.max")
    assert page.locator("#filmstrip .thumb").count() == STEPS

    # 2. scrub: the slider starts at the last step; Home goes to the first, ArrowRight one step on
    slider = page.locator("#slider")
    assert slider.get_attribute("max") == str(STEPS - 1) and slider.input_value() == str(STEPS - 1)
    last_x0, last_x = _src(page, "#img-x0"), _src(page, "#img-x")
    assert last_x.startswith("data:image/png") and page.is_visible("#img-x")
    slider.focus()
    page.keyboard.press("Home")
    assert slider.input_value() == "0"
    first_x0, first_x = _src(page, "#img-x0"), _src(page, "#img-x")
    assert first_x0 != last_x0 and first_x != last_x
    assert page.inner_text("#slider-readout").startswith("0 ")
    page.keyboard.press("ArrowRight")
    assert slider.input_value() == "1" and _src(page, "#img-x") != first_x

    # 3. overlay: the change map of the slider's step, with its opacity
    assert page.is_hidden("#ov-x0")
    page.check("#ov-change")
    assert page.is_visible("#ov-x0") and page.is_visible("#ov-x")
    change_1 = _src(page, "#ov-x0")
    assert change_1.startswith("data:image/png")
    page.eval_on_selector("#opacity", "el => { el.value = '40'; el.dispatchEvent(new Event('input')); }")
    assert page.eval_on_selector("#ov-x0", "el => el.style.opacity") == "0.4"
    slider.focus()  # the radio took the focus
    page.keyboard.press("End")
    assert slider.input_value() == str(STEPS - 1) and _src(page, "#ov-x0") != change_1

    # 4. explanation: curves as SVG with a marker at the slider's step, the narrative, the guidance overlay
    if explain:
        t1 = time.monotonic()
        page.wait_for_function(
            f"document.querySelectorAll('#curves svg').length > 0 || {ERROR_SHOWN}", timeout=TIMEOUT_MS
        )
        assert page.is_hidden("#error"), page.inner_text("#error")
        figures["explain_s"] = round(time.monotonic() - t1, 2)
        figures["curves"] = page.eval_on_selector_all("#curves figure", "fs => fs.map(f => f.dataset.curve)")
        assert page.locator("#narrative li").count() >= 1
        assert page.locator("#curves polyline").count() >= 1
        markers = page.eval_on_selector_all("#curves .marker", VISIBLE_MARKERS)
        assert markers and set(markers) <= {str(STEPS - 1)}, markers
        slider.focus()
        page.keyboard.press("Home")
        moved = page.eval_on_selector_all("#curves .marker", VISIBLE_MARKERS)
        assert moved and set(moved) == {"0"}, moved
        for _ in range(3):  # step 3: early, where guidance acts (the screenshot shows its map)
            page.keyboard.press("ArrowRight")
        if page.is_enabled("#ov-guidance"):
            page.check("#ov-guidance")
            assert _src(page, "#ov-x0").startswith("data:image/png")
            assert page.inner_text("#overlay-note").startswith("guidance map of step 3")
        page.eval_on_selector("#opacity", "el => { el.value = '80'; el.dispatchEvent(new Event('input')); }")
        figures["guidance_overlay"] = page.is_enabled("#ov-guidance")
        figures["attribution_overlay"] = page.is_enabled("#ov-attribution")

    # the layout fits 1280x800 without sideways scrolling
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    shot = shots / "viewer.png"
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 10_000
    figures["screenshot"] = str(shot)

    # 5. open the same trace as a file: the slider comes back without a stream
    trace_id = page.inner_text("#trace-id").split()[1]
    status, trace_bytes = _get(f"{base}/v1/traces/{trace_id}", timeout=10)
    assert status == 200 and len(trace_bytes) > 1000
    page.uncheck("#auto-explain")
    page.set_input_files(
        "#trace-file",
        files=[{"name": "run.trace.safetensors", "mimeType": "application/octet-stream", "buffer": trace_bytes}],
    )
    page.wait_for_function(f"!document.getElementById('slider').disabled || {ERROR_SHOWN}", timeout=TIMEOUT_MS)
    assert page.is_hidden("#error"), page.inner_text("#error")
    assert trace_id in page.inner_text("#trace-id")
    assert page.locator("#slider").get_attribute("max") == str(STEPS - 1)

    # 6. a 4xx from the server: its detail is shown
    page.set_input_files(
        "#trace-file",
        files=[
            {
                "name": "broken.trace.safetensors",
                "mimeType": "application/octet-stream",
                "buffer": b"this is not a trace file",
            }
        ],
    )
    page.wait_for_selector("#error", state="visible", timeout=TIMEOUT_MS)
    error = page.inner_text("#error-text")
    assert "broken.trace.safetensors" in error and error.split(": ", 1)[1][:1] == "4", error
    figures["error_shown"] = error
    page.click("#error-close")
    assert page.is_hidden("#error")

    # 7. cancel: a long run stops where it is, and the next one can start
    page.fill("#steps", "1000")
    page.click("#generate")
    page.wait_for_function(f"{FRAMES} >= 3 || {ERROR_SHOWN}", timeout=TIMEOUT_MS)
    assert page.is_hidden("#error"), page.inner_text("#error")
    page.click("#cancel")
    page.wait_for_function("!document.getElementById('generate').disabled", timeout=TIMEOUT_MS)
    assert page.inner_text("#status").startswith("Cancelled after"), page.inner_text("#status")
    assert int(page.get_attribute("#frame-count", "data-count") or 0) < 1000
    assert page.is_hidden("#error") and page.is_disabled("#slider")
    return figures


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium under Playwright (``executable_path``: Playwright downloads no browser of its own)."""
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def _outside(requests: list[str], base: str) -> list[str]:
    return [u for u in requests if not u.startswith(base + "/")]


def test_viewer_streams_scrubs_and_explains(server: str, browser: Any, tmp_path: Path) -> None:
    requests: list[str] = []
    page_errors: list[str] = []
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.on("request", lambda r: requests.append(r.url))
        page.on("pageerror", lambda e: page_errors.append(str(e)))
        page.set_default_timeout(TIMEOUT_MS)
        figures = exercise_viewer(page, server, tmp_path)
    finally:
        context.close()
    print(json.dumps(figures, indent=1))
    assert page_errors == []
    assert _outside(requests, server) == [], f"the page asked for something outside the server: {requests}"
    assert {server + "/", server + "/static/viewer.js", server + "/static/viewer.css"} <= set(requests)
    assert any(u.startswith(server + "/v1/generate/stream") for u in requests)


def test_request_check_can_fail(server: str, browser: Any) -> None:
    """Negative control: a page that asks for an outside font is caught by the same recorder and check."""
    requests: list[str] = []
    context = browser.new_context()
    try:
        page = context.new_page()
        page.on("request", lambda r: requests.append(r.url))
        page.goto(server + "/")
        page.evaluate(
            """() => { const l = document.createElement('link'); l.rel = 'stylesheet';
            l.href = 'https://fonts.example.com/css?family=Inter'; document.head.append(l); }"""
        )
        page.wait_for_timeout(300)
    finally:
        context.close()
    assert _outside(requests, server) == ["https://fonts.example.com/css?family=Inter"]


# An event stream with a comment, CRLF and LF line ends, a multi-line data field, non-ASCII text and a last
# event without its closing blank line.
SSE_TEXT = (
    ': keep-alive\r\n\r\nevent: start\r\ndata: {"a":1}\r\n\r\nevent: step\ndata: {"s":"\u00e9\u2192"}\n\n'
    'data: line1\ndata: line2\n\nevent: final\ndata: {"z":true}'
)
SSE_EVENTS = [
    ["start", '{"a":1}'],
    ["step", '{"s":"\u00e9\u2192"}'],
    ["message", "line1\nline2"],
    ["final", '{"z":true}'],
]

PARSE_IN_CHUNKS = """async ([text, size]) => {
  const bytes = new TextEncoder().encode(text);
  const stream = new ReadableStream({start(c) {
    for (let i = 0; i < bytes.length; i += size) c.enqueue(bytes.slice(i, i + size));
    c.close();
  }});
  const out = [];
  for await (const e of window.diffsightViewer.sseEvents(stream)) out.push([e.event, e.data]);
  return out;
}"""


def test_stream_parser_in_any_chunking(server: str, browser: Any) -> None:
    """The viewer's SSE parser gives the same events however the bytes are cut (through a CRLF, through a
    multi-byte character), and reads FastAPI's and the API's error bodies."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(server + "/")
        for size in (1, 2, 3, 7, len(SSE_TEXT.encode())):
            assert page.evaluate(PARSE_IN_CHUNKS, [SSE_TEXT, size]) == SSE_EVENTS, size
        # control: the text really has CRLF blocks, which a split on LF LF alone would not separate
        assert len(SSE_TEXT.split("\n\n")) < len(SSE_EVENTS) + 1
        detail = "body => window.diffsightViewer.detailText(body)"
        assert page.evaluate(detail, {"detail": "steps must be 1..1000"}) == "steps must be 1..1000"
        fastapi = {"detail": [{"loc": ["body", "steps"], "msg": "Input should be less than or equal to 1000"}]}
        assert page.evaluate(detail, fastapi) == "steps: Input should be less than or equal to 1000"
    finally:
        context.close()


def test_api_key_and_errors(server: str, browser: Any) -> None:
    """The key typed in the page is kept in sessionStorage and sent as ``Authorization: Bearer`` on every API
    request (the stream included); a 401 and an ``error`` event in the stream are shown with their detail."""
    key = "k3y-for-the-viewer-test-0123"
    sent: list[tuple[str, str | None]] = []
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("request", lambda r: sent.append((r.url, r.headers.get("authorization"))))
        page.goto(server + "/")
        page.wait_for_function("document.querySelectorAll('#model option').length > 0")
        page.fill("#api-key", key)
        page.click("#key-save")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('Choose a model')")
        page.fill("#steps", "3")
        page.uncheck("#auto-explain")
        page.click("#generate")
        page.wait_for_function(f"!document.getElementById('slider').disabled || {ERROR_SHOWN}")
        assert page.is_hidden("#error"), page.inner_text("#error")
        page.click("#download")  # GET /v1/traces/{id} with the key too
        page.wait_for_function(
            "performance.getEntriesByType('resource').some(e => /\\/v1\\/traces\\/[0-9a-f]{16}$/.test(e.name))"
        )
        api = [(u, h) for u, h in sent if "/v1/" in u]
        first = next(i for i, (_, h) in enumerate(api) if h)  # the models list before the key had none
        assert [u.split("/v1/")[1].split("?")[0].split("/")[0] for u, _ in api[first:]] == [
            "models",
            "generate",
            "traces",
            "traces",
        ]
        assert all(h == f"Bearer {key}" for _, h in api[first:]), api
        assert page.evaluate("sessionStorage.getItem('diffsight.apiKey')") == key
        page.reload()
        assert page.input_value("#api-key") == key

        # a 401 shows the server's detail and what to do
        page.route("**/v1/models", lambda r: r.fulfill(status=401, json={"detail": "a valid API key is needed"}))
        page.click("#key-save")
        page.wait_for_selector("#error", state="visible")
        assert "401: a valid API key is needed" in page.inner_text("#error-text")
        assert "API key" in page.inner_text("#error-text")
        page.unroute("**/v1/models")
        page.click("#key-save")
        page.wait_for_selector("#error", state="hidden")

        # an error event in the middle of the stream ends the run with its detail
        stream = (
            'event: start\ndata: {"model":"digits","steps":5,"sampler":"euler","seed":0,"label":null}\n\n'
            'event: error\ndata: {"status":504,"detail":"the request took longer than 120 s"}\n\n'
        )
        page.route(
            "**/v1/generate/stream",
            lambda r: r.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=stream),
        )
        page.click("#generate")
        page.wait_for_selector("#error", state="visible")
        assert "504: the request took longer than 120 s" in page.inner_text("#error-text")
        assert page.is_enabled("#generate") and page.is_disabled("#slider")
    finally:
        context.close()
