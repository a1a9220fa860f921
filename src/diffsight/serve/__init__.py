"""The HTTP service (layer 6): ``diffsight serve``, an app factory, and the web viewer's static files.

``create_app(ServeConfig(models=("digits",)))`` returns a FastAPI app with its own state (no module globals);
``run_server(config)`` serves it with uvicorn. Both need the ``serve`` extra (FastAPI, uvicorn):
``pip install 'diffsight[serve]'``; without it they raise a :class:`~diffsight.errors.DiffsightError` that
says so. docs/serve.md describes the API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from diffsight.serve.config import ServeConfig, read_api_key
from diffsight.serve.deps import require_serve_extra
from diffsight.serve.server import run_server

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["ServeConfig", "create_app", "read_api_key", "require_serve_extra", "run_server"]


def create_app(config: ServeConfig) -> FastAPI:
    """The FastAPI app for ``config`` (see :mod:`diffsight.serve.app`)."""
    require_serve_extra()
    from diffsight.serve.app import create_app as build

    return build(config)
