"""What a ``diffsight serve`` process is: one typed, frozen configuration that maps 1:1 to the CLI flags.

Nothing here imports FastAPI, so the CLI can build and check a configuration (and fail with a clear message)
before the optional ``serve`` extra is needed.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

from diffsight.errors import DiffsightError

__all__ = ["ServeConfig", "read_api_key"]

_KEY_CHARS = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII without spaces: a key fits in an HTTP header


def read_api_key(path: str | Path) -> str:
    """The API key in ``path``: its text with surrounding whitespace removed, at least 16 printable characters."""
    file = Path(path).expanduser()
    try:
        key = file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise DiffsightError(f"cannot read the API key file {file}: {err}") from None
    if len(key) < 16 or not _KEY_CHARS.match(key):
        raise DiffsightError(
            f"the API key in {file} must be at least 16 printable ASCII characters without spaces "
            "(for example the output of `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    return key


@dataclass(frozen=True)
class ServeConfig:
    """Everything the app factory :func:`diffsight.serve.create_app` needs.

    Attributes:
        models: shipped model names or model folders to serve (empty: every shipped model).
        host, port: where uvicorn listens (the app itself does not use them).
        api_key: when set, every endpoint but health checks and the viewer's files needs
            ``Authorization: Bearer <api_key>``.
        artifacts: root for stored Traces: a folder or an fsspec URL (``s3://bucket/prefix``).
        max_queue: requests admitted at once (running + waiting); one more gets 503 with ``Retry-After``.
        workers: requests computed at the same time (threads); the rest of the queue waits.
        timeout: seconds a request may take from admission to its last byte of work; then 504.
        cors_origins: origins allowed by CORS; empty: no CORS headers at all.
        max_json_bytes: largest JSON request body (413 beyond).
        max_trace_bytes: largest uploaded Trace file (413 beyond).
        max_image_side: largest side in pixels of an image sent to /v1/score.
        trace_memory_budget: bytes a recorded Trace may take in memory (n x steps x image size).
        torch_threads: intra-op threads of torch in the server process (1 suits small models and many requests).
        shutdown_grace: seconds running requests get to finish at shutdown before they are cancelled.
        static_dir: folder of the web viewer (default: the package's ``serve/static``); missing: ``/`` is 404.
    """

    models: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = field(default=None, repr=False)
    artifacts: str = "diffsight-artifacts"
    max_queue: int = 64
    workers: int = 2
    timeout: float = 120.0
    cors_origins: tuple[str, ...] = ()
    max_json_bytes: int = 4 * 1024 * 1024
    max_trace_bytes: int = 64 * 1024 * 1024
    max_image_side: int = 1024
    trace_memory_budget: int = 512 * 1024 * 1024
    torch_threads: int = 1
    shutdown_grace: float = 10.0
    static_dir: Path | None = None

    def __post_init__(self) -> None:
        checks = [
            (1 <= self.port <= 65535, f"port must be in 1..65535, got {self.port}"),
            (self.max_queue >= 1, f"max_queue must be at least 1, got {self.max_queue}"),
            (self.workers >= 1, f"workers must be at least 1, got {self.workers}"),
            (self.timeout > 0, f"timeout must be positive seconds, got {self.timeout}"),
            (self.max_json_bytes >= 1024, f"max_json_bytes must be at least 1024, got {self.max_json_bytes}"),
            (self.max_trace_bytes >= 1024, f"max_trace_bytes must be at least 1024, got {self.max_trace_bytes}"),
            (self.max_image_side >= 8, f"max_image_side must be at least 8, got {self.max_image_side}"),
            (self.torch_threads >= 1, f"torch_threads must be at least 1, got {self.torch_threads}"),
            (self.shutdown_grace >= 0, f"shutdown_grace must be >= 0, got {self.shutdown_grace}"),
            (bool(str(self.artifacts).strip()), "artifacts must name a folder or an fsspec URL"),
        ]
        for ok, message in checks:
            if not ok:
                raise DiffsightError(message)
        for origin in self.cors_origins:
            if origin != "*" and not re.match(r"^https?://[^/\s]+$", origin):
                raise DiffsightError(
                    f"CORS origin {origin!r} must look like https://example.org (scheme and host, no path) or be *"
                )
        if self.api_key is not None and (len(self.api_key) < 16 or not _KEY_CHARS.match(self.api_key)):
            raise DiffsightError("the API key must be at least 16 printable ASCII characters without spaces")

    @property
    def is_loopback(self) -> bool:
        """True when ``host`` only accepts connections from this machine."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False
