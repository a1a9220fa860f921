"""Save and load Traces: one safetensors file whose header carries the JSON metadata, plus a JSON copy beside it.

``save_trace(trace, "run.trace.safetensors")`` writes the file (atomically for local paths) and
``run.trace.json`` (the metadata, for people and tools that do not read safetensors). Any fsspec URL works in
place of a path (``s3://bucket/run.trace.safetensors``, ``memory://...``). Loading reads only the safetensors
file, never unpickles anything, and checks the content hash.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from diffsight.atomic import write_bytes_atomic
from diffsight.errors import DiffsightError
from diffsight.trace.record import TRACE_FORMAT, TRACE_FORMAT_VERSION, Trace

__all__ = ["load_trace", "save_trace", "sidecar_path", "trace_to_bytes", "trace_from_bytes"]

_META_KEY = "diffsight.trace"
_MAX_HEADER = 64 * 1024 * 1024


def _is_url(target: str) -> bool:
    return "://" in target and not target.startswith("file://")


def sidecar_path(target: str) -> str:
    """``run.trace.safetensors`` -> ``run.trace.json``; any other name gets ``.json`` appended."""
    return target[: -len(".safetensors")] + ".json" if target.endswith(".safetensors") else target + ".json"


def trace_to_bytes(trace: Trace) -> bytes:
    """The safetensors bytes of ``trace`` (tensors, with the metadata JSON in the header)."""
    from safetensors.torch import save

    tensors = {name: t.detach().contiguous().cpu() for name, t in trace.tensors.items()}
    return save(tensors, metadata={_META_KEY: json.dumps(trace.meta, sort_keys=True)})


def trace_from_bytes(data: bytes, *, where: str = "trace") -> Trace:
    """Parse safetensors bytes written by :func:`trace_to_bytes`; errors say what is wrong with ``where``."""
    from safetensors.torch import load

    if len(data) < 8:
        raise DiffsightError(f"{where} is not a trace: {len(data)} bytes")
    (size,) = struct.unpack("<Q", data[:8])
    if size > min(_MAX_HEADER, len(data) - 8):
        raise DiffsightError(f"{where} is not a trace (bad safetensors header) or is truncated")
    try:
        header = json.loads(data[8 : 8 + size])
        meta: dict[str, Any] = json.loads(header.get("__metadata__", {}).get(_META_KEY, "null"))
    except (ValueError, AttributeError) as err:
        raise DiffsightError(f"{where} is not a diffsight trace: unreadable header ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != TRACE_FORMAT:
        raise DiffsightError(f"{where} is a safetensors file but not a diffsight trace")
    if int(meta.get("format_version", 0)) > TRACE_FORMAT_VERSION:
        raise DiffsightError(f"{where} was written by a newer diffsight (trace format {meta['format_version']})")
    try:
        tensors = load(data)
    except Exception as err:  # safetensors raises its own error types for damaged files
        raise DiffsightError(f"{where} is damaged: {err}") from None
    trace = Trace(meta=meta, tensors=tensors)
    trace.verify()
    return trace


def save_trace(trace: Trace, target: str | Path) -> str:
    """Write ``trace`` to a path or fsspec URL (and its JSON sidecar); returns the target as a string."""
    target = str(target)
    payload = trace_to_bytes(trace)
    sidecar = json.dumps(trace.meta, indent=2, sort_keys=True).encode()
    if _is_url(target):
        import fsspec

        with fsspec.open(target, "wb") as f:
            f.write(payload)
        with fsspec.open(sidecar_path(target), "wb") as f:
            f.write(sidecar)
    else:
        path = Path(target.removeprefix("file://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, payload)
        write_bytes_atomic(Path(sidecar_path(str(path))), sidecar)
    return target


def load_trace(source: str | Path) -> Trace:
    """Read a trace from a path or fsspec URL and check its content hash."""
    source = str(source)
    if _is_url(source):
        import fsspec

        try:
            with fsspec.open(source, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise DiffsightError(f"no trace at {source}") from None
    else:
        path = Path(source.removeprefix("file://")).expanduser()
        if not path.is_file():
            raise DiffsightError(f"no trace at {path}: pass the .safetensors file that save_trace wrote")
        data = path.read_bytes()
    return trace_from_bytes(data, where=source)
