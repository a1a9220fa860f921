"""Run the app under uvicorn: loopback by default, graceful shutdown on SIGINT/SIGTERM.

At shutdown uvicorn stops accepting connections and gives running requests ``shutdown_grace`` seconds to
finish; what is still running then is cancelled (streams end, workers stop at their next network evaluation),
and the process exits.
"""

from __future__ import annotations

import logging

from diffsight.serve.config import ServeConfig
from diffsight.serve.deps import require_serve_extra

__all__ = ["run_server"]


def run_server(config: ServeConfig, *, log_level: str = "info", access_log: bool = True) -> None:
    """Serve ``config`` until interrupted (blocks)."""
    require_serve_extra()
    import torch
    import uvicorn

    from diffsight.serve.app import create_app

    torch.set_num_threads(config.torch_threads)
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    app = create_app(config)
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=int(config.shutdown_grace) if config.shutdown_grace else None,
        server_header=False,
        proxy_headers=False,
    )
