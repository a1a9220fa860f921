"""Traces stored under the artifact root by id: a local folder or any fsspec URL (``s3://bucket/prefix``).

A stored trace lives at ``<root>/traces/<id>.trace.safetensors``, where ``id`` is the first 16 hex digits of
its content hash. Ids are checked against :data:`TRACE_ID` before any path is built, so no request can name a
file outside the root; the id of an uploaded trace is the one its verified content hash gives, never one the
client chose. Recently used traces stay in memory (a small LRU) so that frames and explain do not re-read them.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from pathlib import Path

from diffsight.atomic import write_bytes_atomic
from diffsight.errors import DiffsightError
from diffsight.trace.io import trace_from_bytes, trace_to_bytes
from diffsight.trace.record import Trace

__all__ = ["TRACE_ID", "TraceNotFound", "TraceStore", "is_trace_id"]

TRACE_ID = re.compile(r"[0-9a-f]{16}")


class TraceNotFound(DiffsightError):
    """No trace with that id is stored."""


def is_trace_id(value: object) -> bool:
    """True for exactly 16 lowercase hex digits."""
    return isinstance(value, str) and TRACE_ID.fullmatch(value) is not None


def _is_url(root: str) -> bool:
    return "://" in root and not root.startswith("file://")


class TraceStore:
    """Put and get Trace files under ``root`` (a folder or fsspec URL); thread-safe.

    Args:
        root: the artifact root.
        cache_size, cache_bytes: at most this many traces, and this many bytes of them, stay in memory.
    """

    def __init__(self, root: str, *, cache_size: int = 32, cache_bytes: int = 256 * 1024 * 1024) -> None:
        self.root = str(root).rstrip("/")
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, Trace] = OrderedDict()
        self._cache_size = cache_size
        self._cache_bytes = cache_bytes
        if _is_url(self.root):
            import fsspec

            try:
                self._fs, self._base = fsspec.core.url_to_fs(self.root)
            except (ImportError, ValueError) as err:
                raise DiffsightError(
                    f"cannot open the artifact root {self.root}: {err} (for s3:// URLs: pip install 'diffsight[cloud]')"
                ) from None
            self._local: Path | None = None
        else:
            self._local = Path(self.root.removeprefix("file://")).expanduser().resolve()
            self._local.mkdir(parents=True, exist_ok=True)
            (self._local / "traces").mkdir(exist_ok=True)

    def check(self) -> None:
        """Write, read back and delete a probe object: fail at startup, not at the first request."""
        if self._local is not None:
            probe = self._local / "traces" / ".probe"
            write_bytes_atomic(probe, b"ok")
            probe.unlink()
            return
        path = f"{self._base}/traces/.probe"
        try:
            self._fs.pipe_file(path, b"ok")
            ok = self._fs.cat_file(path) == b"ok"
            self._fs.rm_file(path)
        except Exception as err:  # every backend raises its own errors
            raise DiffsightError(
                f"cannot write to the artifact root {self.root}: {type(err).__name__}: {err}{_backend_hint(self._fs)}"
            ) from None
        if not ok:
            raise DiffsightError(f"the artifact root {self.root} did not return what was written to it")

    def _key(self, trace_id: str) -> str:
        if not is_trace_id(trace_id):  # the only gate between a request and a path: never skip it
            raise DiffsightError(f"a trace id is 16 lowercase hex digits, got {str(trace_id)[:40]!r}")
        return f"traces/{trace_id}.trace.safetensors"

    def location(self, trace_id: str) -> str:
        """Where the trace is stored (path or URL), for logs and responses."""
        key = self._key(trace_id)
        return str(self._local / key) if self._local is not None else f"{self.root}/{key}"

    def _remember(self, trace: Trace) -> None:
        with self._lock:
            self._cache[trace.id] = trace
            self._cache.move_to_end(trace.id)
            total = sum(t.nbytes() for t in self._cache.values())
            while len(self._cache) > self._cache_size or (total > self._cache_bytes and len(self._cache) > 1):
                _, dropped = self._cache.popitem(last=False)
                total -= dropped.nbytes()

    def put(self, trace: Trace, data: bytes | None = None) -> str:
        """Store ``trace`` (``data``: its bytes when already serialised); returns its id."""
        key = self._key(trace.id)
        payload = data if data is not None else trace_to_bytes(trace)
        if self._local is not None:
            write_bytes_atomic(self._local / key, payload)
        else:
            self._fs.pipe_file(f"{self._base}/{key}", payload)
        self._remember(trace)
        return trace.id

    def get_bytes(self, trace_id: str) -> bytes:
        """The stored file's bytes; :class:`TraceNotFound` when there is none."""
        key = self._key(trace_id)
        try:
            if self._local is not None:
                return (self._local / key).read_bytes()
            return bytes(self._fs.cat_file(f"{self._base}/{key}"))
        except FileNotFoundError:
            raise TraceNotFound(
                f"no trace {trace_id} is stored here: generate one or upload it to POST /v1/traces"
            ) from None

    def get(self, trace_id: str) -> Trace:
        """The stored trace, parsed and verified (from memory when recently used)."""
        self._key(trace_id)
        with self._lock:
            cached = self._cache.get(trace_id)
            if cached is not None:
                self._cache.move_to_end(trace_id)
                return cached
        trace = trace_from_bytes(self.get_bytes(trace_id), where=f"stored trace {trace_id}")
        if trace.id != trace_id:
            raise DiffsightError(f"stored trace {trace_id} holds trace {trace.id}: the artifact root was altered")
        self._remember(trace)
        return trace


def _backend_hint(fs: object) -> str:
    """A hint when the filesystem package is too old to work (s3fs before the 2021 async rewrite lacks pipe_file)."""
    module = type(fs).__module__.split(".")[0]
    if module != "s3fs":
        return ""
    from importlib.metadata import version

    installed = version("s3fs")
    if int(installed.split(".")[0]) >= 2021:
        return ""
    return f" (s3fs {installed} is too old: pip install 'diffsight[cloud]' asks for s3fs>=2024.1)"
