"""The service's optional dependencies (the ``serve`` extra): one check with a message that says what to install."""

from __future__ import annotations

import importlib.util

from diffsight.errors import DiffsightError

__all__ = ["SERVE_PACKAGES", "require_serve_extra"]

SERVE_PACKAGES = ("fastapi", "uvicorn")
"""Imported by the service; ``httpx`` (the clients in tests and the benchmark) is in the extra too."""


def require_serve_extra() -> None:
    """Raise a :class:`DiffsightError` naming ``pip install 'diffsight[serve]'`` when FastAPI or uvicorn is missing."""
    missing = [name for name in SERVE_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise DiffsightError(
            f"the service needs {' and '.join(missing)}, which are not installed: pip install 'diffsight[serve]'"
        )
