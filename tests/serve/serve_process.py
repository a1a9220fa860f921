"""Start the real ``diffsight serve`` as a process on a free loopback port, and read its event streams.

Test modules in this folder import it as ``from serve_process import ...``. :func:`shared_server` starts one
server per distinct set of flags for the whole session (modules that need the same server share it) and stops
it when the session ends.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

API_KEY = "test-key-0123456789abcdef"
READY_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running ``diffsight serve`` process."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    artifacts: str
    key: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def headers(self, **more: str) -> dict[str, str]:
        out = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        out.update(more)
        return out

    def client(self, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers(), timeout=timeout)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)


def start_server(
    tmp: Path,
    args: Sequence[str] = (),
    *,
    key: str | None = None,
    env: dict[str, str] | None = None,
    artifacts: str | None = None,
) -> Server:
    """Start the server and wait for ``/readyz``; fails the test with the server's log when it does not come up."""
    port = free_port()
    artifacts = artifacts or str(tmp / "artifacts")
    command = [sys.executable, "-m", "diffsight", "serve", "--model", "digits", "--port", str(port)]
    command += ["--artifacts", artifacts, "--no-access-log", *args]
    if key is not None:
        key_file = tmp / "api-key"
        key_file.write_text(key + "\n")
        command += ["--api-key-file", str(key_file)]
    log = tmp / f"server-{port}.log"
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    with log.open("wb") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=full_env)
    server = Server(proc, f"http://127.0.0.1:{port}", log, artifacts, key)
    end = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"the server exited with {proc.returncode}:\n{server.log_tail()}")
        try:
            ready = httpx.get(f"{server.url}/readyz", timeout=2.0)
        except httpx.TransportError:
            ready = None
        if ready is not None and ready.status_code == 200:
            return server
        if ready is not None and "could not load" in ready.json().get("detail", ""):
            server.stop()  # loading failed for good: say why now rather than after the timeout
            pytest.fail(f"the server could not load its models:\n{server.log_tail()}")
        time.sleep(0.2)
    server.stop()
    pytest.fail(f"the server was not ready after {READY_TIMEOUT:.0f} s:\n{server.log_tail()}")


_SHARED: dict[tuple[str, ...], Server] = {}


def shared_server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    args: Sequence[str] = (),
    *,
    key: str | None = None,
) -> Server:
    """One server per set of flags for the whole test session."""
    ident = (*args, f"key={key}")
    if ident not in _SHARED:
        server = start_server(tmp_path_factory.mktemp("serve"), args, key=key)
        _SHARED[ident] = server

        def stop() -> None:
            _SHARED.pop(ident, None)
            server.stop()

        request.session.config.add_cleanup(stop)
    return _SHARED[ident]


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any], float]]:
    """(event, data, monotonic time the event's block ended) for each event of a text/event-stream."""
    event, data = "message", []
    for line in lines:
        if line == "":
            if data:
                yield event, json.loads("\n".join(data)), time.monotonic()
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
