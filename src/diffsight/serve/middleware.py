"""Two plain ASGI middlewares that run before any endpoint: the API key, and body size and content type limits.

``ApiKeyMiddleware`` answers 401 unless ``Authorization: Bearer <key>`` carries the configured key (compared
with :func:`hmac.compare_digest`, in constant time for keys of the same length); health checks and the
viewer's static files stay public. ``LimitsMiddleware`` answers 415 when a POST body has the wrong content
type and 413 as soon as a body grows past its limit, from ``Content-Length`` when the client sends one and
while reading otherwise, so an oversized body is never held in memory.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

__all__ = ["ApiKeyMiddleware", "LimitsMiddleware", "is_public"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_PUBLIC = ("/healthz", "/readyz", "/")


def is_public(method: str, path: str) -> bool:
    """Health checks and the viewer's files (GET or HEAD) need no key."""
    return method in ("GET", "HEAD") and (path in _PUBLIC or path.startswith("/static/"))


async def send_json(send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] = ()) -> None:
    """Send a complete JSON response from a middleware."""
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value)
    return None


class ApiKeyMiddleware:
    """401 for every request but :func:`is_public` ones unless it carries ``Authorization: Bearer <key>``."""

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app = app
        self._key = key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        header = _header(scope, b"authorization")
        challenge = [(b"www-authenticate", b'Bearer realm="diffsight"')]
        if header is None:
            await send_json(
                send, 401, {"detail": "this server needs an API key: send Authorization: Bearer <key>"}, challenge
            )
            return
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            await send_json(
                send, 401, {"detail": "the Authorization header must be 'Bearer <key>' (RFC 6750)"}, challenge
            )
            return
        if not hmac.compare_digest(token.strip(), self._key):
            await send_json(send, 401, {"detail": "wrong API key"}, challenge)
            return
        await self.app(scope, receive, send)


class _TooLarge(HTTPException):
    """Raised while reading a body past its limit; FastAPI passes HTTPExceptions through to the 413 response."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than this endpoint's limit of {limit} bytes")


class LimitsMiddleware:
    """Content type and size limits for request bodies under ``/v1/``.

    Args:
        json_limit: bytes a JSON body may have.
        raw_limits: path -> (content type, byte limit) for endpoints that take raw bytes.
    """

    def __init__(self, app: ASGIApp, json_limit: int, raw_limits: dict[str, tuple[str, int]]) -> None:
        self.app = app
        self.json_limit = json_limit
        self.raw_limits = raw_limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secure(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-content-type-options", b"nosniff")]
            await send(message)

        if scope["method"] not in ("POST", "PUT", "PATCH") or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send_secure)
            return
        wanted, limit = self.raw_limits.get(scope["path"], ("application/json", self.json_limit))
        given = (_header(scope, b"content-type") or b"").split(b";")[0].strip().lower().decode("latin-1")
        if given != wanted:
            await send_json(
                send_secure,
                415,
                {"detail": f"send the body as Content-Type: {wanted} (got {given or 'no content type'})"},
            )
            return
        length = _header(scope, b"content-length")
        too_large = {"detail": f"the request body is larger than this endpoint's limit of {limit} bytes"}
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await send_json(send_secure, 400, {"detail": "Content-Length is not a number"})
                return
            if declared > limit:
                await send_json(send_secure, 413, too_large, [(b"connection", b"close")])
                return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send_secure(message)

        try:
            await self.app(scope, counted_receive, tracking_send)
        except _TooLarge:
            if not started:
                await send_json(send_secure, 413, too_large, [(b"connection", b"close")])
