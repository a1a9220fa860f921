"""Open an HTML file in headless Chromium with the network cut off, and report every request it tried.

DESIGN.md ("Artifacts"): reports are single HTML files that work offline. Reading the HTML for ``http``
misses what a script or a stylesheet asks for at run time, so :func:`open_offline` opens the page in a real
browser whose only way out is a recording proxy that this module starts on 127.0.0.1:

- ``--proxy-server=127.0.0.1:PORT`` sends every http/https/ws request to the proxy, and
  ``--proxy-bypass-list=<-loopback>`` removes Chromium's implicit bypass for localhost, so loopback requests
  are recorded too;
- ``--host-resolver-rules`` makes every host name except the proxy's address unresolvable, so nothing can
  leave by DNS or by a direct connection even if a request slipped past the proxy;
- the proxy records each request line (``GET http://host/x``, ``CONNECT host:443``) and answers
  ``502 Bad Gateway``: it never connects anywhere;
- Chromium's own background traffic (component updates, sync, default apps, field trials, safe browsing) is
  switched off by flags, in a fresh profile per run, so that a page with no external references records
  zero requests.

:func:`external_references` is the static half: every ``src``/``href``/``url()``/``@import`` value of the
HTML that would be fetched from somewhere (not ``data:``, ``#fragment``, ``javascript:``, ``blob:``,
``about:``). Plain ``<a href=...>`` links are returned apart by :func:`link_targets`: a person may click
them, the page does not load them.

Tests import this module as ``from browser import ...`` (``tests/`` is on ``sys.path`` through its
conftest, like ``from conftest import moment_errors``) and mark browser tests with :data:`requires_chromium`.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

__all__ = [
    "BROWSER_SERVICE_HOSTS",
    "BrowserResult",
    "RecordingProxy",
    "chromium_path",
    "external_references",
    "link_targets",
    "open_offline",
    "request_host",
    "requires_chromium",
]

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


# Debian's /usr/bin/chromium is a shell wrapper that adds remote extensions and Google API keys (more
# background traffic); the binary behind it is used directly when it is there.
_DEBIAN_BINARY = Path("/usr/lib/chromium/chromium")


def chromium_path() -> str | None:
    """The Chromium binary: ``$DIFFSIGHT_CHROMIUM`` if set, else Debian's binary behind its wrapper, else the
    first of chromium/chrome on PATH."""
    override = os.environ.get("DIFFSIGHT_CHROMIUM")
    if override:
        return override if Path(override).exists() else None
    if _DEBIAN_BINARY.is_file() and os.access(_DEBIAN_BINARY, os.X_OK):
        return str(_DEBIAN_BINARY)
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


requires_chromium = pytest.mark.skipif(
    chromium_path() is None,
    reason="headless Chromium not found (run `make browser`, i.e. apt-get install chromium, as root; or set "
    "DIFFSIGHT_CHROMIUM): the offline-HTML browser checks need a real browser",
)


# --- the recording proxy ----------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """Records the request line of any method and answers 502 without contacting anything."""

    server: _ProxyServer
    protocol_version = "HTTP/1.0"  # one request per connection: nothing is kept open

    def _refuse(self) -> None:
        self.server.record(f"{self.command} {self.path}")
        body = b"diffsight test proxy: the network is off\n"
        self.send_response(502, "Bad Gateway (offline test proxy)")
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command not in ("HEAD", "CONNECT"):
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = do_OPTIONS = do_DELETE = do_PATCH = do_CONNECT = _refuse

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class names it so
        pass


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[str] = []
        self._lock = threading.Lock()

    def record(self, line: str) -> None:
        with self._lock:
            self.requests.append(line)


class RecordingProxy:
    """A threaded HTTP/CONNECT proxy on 127.0.0.1 that records every request and answers 502.

    Use as a context manager; ``port`` is free-chosen by the OS, ``requests`` lists ``"METHOD target"``.
    """

    def __init__(self) -> None:
        self._server = _ProxyServer()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def requests(self) -> list[str]:
        with self._server._lock:
            return list(self._server.requests)

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# --- the browser ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BrowserResult:
    """What headless Chromium did with a page.

    Attributes:
        dom: the serialised DOM after scripts ran (``--dump-dom``).
        screenshot: the PNG written with ``--screenshot``, or None when none was asked for.
        requests: every request that reached the recording proxy (``"GET http://host/path"``,
            ``"CONNECT host:443"``) except Chromium's own service traffic; empty for a page that works offline.
        browser_requests: the requests to :data:`BROWSER_SERVICE_HOSTS` (Chromium's update check and sign-in
            preconnect), kept apart so that they can be inspected.
        stderr: Chromium's log (for a failure message).
    """

    dom: str
    screenshot: Path | None
    requests: list[str] = field(default_factory=list)
    browser_requests: list[str] = field(default_factory=list)
    stderr: str = ""


def request_host(line: str) -> str:
    """The host of a recorded request line: ``"GET http://a.b:8/x"`` and ``"CONNECT a.b:443"`` give ``a.b``."""
    target = line.split(" ", 1)[1] if " " in line else line
    if "://" in target:
        return (urlsplit(target).hostname or "").lower()
    return target.rsplit(":", 1)[0].strip("[]").lower()


_DISABLED_FEATURES = (
    "NetworkTimeServiceQuerying",  # GET clients2.google.com/time/...
    "OptimizationHints",
    "OptimizationHintsFetching",
    "OptimizationGuideModelDownloading",
    "OptimizationTargetPrediction",
    "MediaRouter",
    "Translate",
    "AutofillServerCommunication",
    "CertificateTransparencyComponentUpdater",
)

# Chromium's own service traffic that no flag of Chromium 156 turns off: the on-demand "Optimization Guide On
# Device Models Manifest" update check (component id ceofaddefefcbblgcgnibnonglccbfja, sent with
# X-Goog-Update-* headers) and a sign-in preconnect. These hosts are reported in ``browser_requests``, not
# in ``requests``; they still only ever reach the recording proxy, and the static check
# (:func:`external_references`) still reports a page that names them.
BROWSER_SERVICE_HOSTS = frozenset({"update.googleapis.com", "accounts.google.com", "clients2.google.com"})

# Flags that keep Chromium's own traffic off the wire (the page's requests are what the proxy should see).
_QUIET_FLAGS = (
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-breakpad",
    "--disable-features=" + ",".join(_DISABLED_FEATURES),
    "--no-first-run",
    "--no-default-browser-check",
    "--no-pings",
    "--metrics-recording-only",
    "--safebrowsing-disable-auto-update",
    "--password-store=basic",
    "--use-mock-keychain",
)


def _run_chromium(binary: str, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": "disabled:"}  # no session bus: quiet log
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL
    )


def open_offline(
    html_path: str | Path,
    *,
    screenshot: str | Path | None = None,
    window_size: tuple[int, int] = (1200, 3000),
    virtual_time_ms: int = 5000,
    timeout: float = 60.0,
) -> BrowserResult:
    """Load ``file://<html_path>`` in headless Chromium behind a recording proxy; return DOM, screenshot, requests.

    Chromium runs with ``--headless=new --no-sandbox --disable-gpu``, a fresh ``--user-data-dir``, the quiet
    flags above, and ``--virtual-time-budget`` (timers and fetches get ``virtual_time_ms`` of page time, so a
    script's delayed request is still made). With ``screenshot`` a second run writes the PNG at
    ``window_size``; both runs go through the same proxy.
    """
    binary = chromium_path()
    if binary is None:
        raise RuntimeError("Chromium not found: run `make browser` or set DIFFSIGHT_CHROMIUM")
    page = Path(html_path).resolve()
    if not page.is_file():
        raise FileNotFoundError(page)
    url = page.as_uri()
    with RecordingProxy() as proxy, tempfile.TemporaryDirectory(prefix="diffsight-chromium-") as profile:
        common = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            f"--proxy-server=http://127.0.0.1:{proxy.port}",
            "--proxy-bypass-list=<-loopback>",
            # Every name resolves to nothing, so no DNS query and no direct connection can leave the machine.
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
            *_QUIET_FLAGS,
            f"--virtual-time-budget={int(virtual_time_ms)}",
        ]
        dumped = _run_chromium(binary, [*common, "--dump-dom", url], timeout)
        if dumped.returncode != 0 or "<html" not in dumped.stdout.lower():
            raise RuntimeError(f"chromium failed on {page} (exit {dumped.returncode}):\n{dumped.stderr[-3000:]}")
        shot: Path | None = None
        stderr = dumped.stderr
        if screenshot is not None:
            shot = Path(screenshot).resolve()
            shot.parent.mkdir(parents=True, exist_ok=True)
            w, h = window_size
            taken = _run_chromium(binary, [*common, f"--window-size={w},{h}", f"--screenshot={shot}", url], timeout)
            stderr += taken.stderr
            if taken.returncode != 0 or not shot.is_file():
                raise RuntimeError(
                    f"chromium wrote no screenshot of {page} (exit {taken.returncode}):\n{taken.stderr[-3000:]}"
                )
        recorded = proxy.requests
    own = [r for r in recorded if request_host(r) in BROWSER_SERVICE_HOSTS]
    page_requests = [r for r in recorded if request_host(r) not in BROWSER_SERVICE_HOSTS]
    return BrowserResult(
        dom=dumped.stdout, screenshot=shot, requests=page_requests, browser_requests=own, stderr=stderr
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for negative controls)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the static check -------------------------------------------------------------------------------------------

_URL_ATTRS = frozenset(
    {"src", "href", "srcset", "poster", "data", "action", "formaction", "xlink:href", "background", "longdesc"}
)
_CSS_URL = re.compile(r"""url\(\s*("[^"]*"|'[^']*'|[^)]*)\s*\)""", re.I)
_CSS_IMPORT = re.compile(r"""@import\s+("[^"]*"|'[^']*')""", re.I)
_LOCAL = ("data:", "#", "javascript:", "blob:", "about:")


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    return value.strip()


def _is_local(value: str) -> bool:
    return value == "" or value.lower().startswith(_LOCAL)


def _css_references(css: str) -> list[str]:
    found = [_unquote(m.group(1)) for m in _CSS_URL.finditer(css)]
    found += [_unquote(m.group(1)) for m in _CSS_IMPORT.finditer(css)]
    return [v for v in found if not _is_local(v)]


class _References(HTMLParser):
    """Collects URL-valued attributes (entities decoded by the parser), ``style`` attributes and ``<style>``
    text; text content and script bodies are not read (the browser run covers what scripts fetch)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.loaded: list[str] = []
        self.links: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_style = tag == "style"
        for name, value in attrs:
            if value is None:
                continue
            if name == "style":
                self.loaded += _css_references(value)
            elif name in _URL_ATTRS:
                if tag == "a" and name == "href":
                    if not _is_local(value.strip()):
                        self.links.append(value.strip())
                elif name == "srcset":
                    candidates = (c.strip().split()[0] for c in re.split(r",\s+", value) if c.strip())
                    self.loaded += [c for c in candidates if not _is_local(c)]
                elif not _is_local(value.strip()):
                    self.loaded.append(value.strip())

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.loaded += _css_references(data)


def _parse(html: str) -> _References:
    parser = _References()
    parser.feed(html)
    parser.close()
    return parser


def link_targets(html: str) -> list[str]:
    """The ``href`` of every ``<a>`` element that points somewhere else (clicked by a person, never loaded)."""
    return _parse(html).links


def external_references(html: str) -> list[str]:
    """Every URL-valued attribute (``src``, ``href``, ``srcset``, ``poster``, ``data``, ...), CSS ``url()`` and
    ``@import`` of ``html`` that the page would fetch: anything but ``data:``, ``#...``, ``javascript:``,
    ``blob:`` and ``about:``, in document order.

    The HTML is parsed (so escaped text such as ``&lt;img src=...&gt;`` is text, not a reference). ``<a href>``
    links are left out (see :func:`link_targets`); a ``<link href>`` (stylesheet, icon) counts.
    """
    return _parse(html).loaded
