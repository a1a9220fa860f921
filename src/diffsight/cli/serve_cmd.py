"""``diffsight serve``: the HTTP API and the web viewer (a thin shell over :func:`diffsight.serve.run_server`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["serve"]


def serve(
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model", "-m", help="Shipped model name or model folder to serve (repeat; default: all shipped)."
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8000,
    api_key_file: Annotated[
        Path | None,
        typer.Option("--api-key-file", help="File holding the API key; then every endpoint but health needs it."),
    ] = None,
    artifacts: Annotated[
        str, typer.Option(help="Where traces are stored: a folder or an fsspec URL (s3://bucket/prefix).")
    ] = "diffsight-artifacts",
    max_queue: Annotated[
        int, typer.Option("--max-queue", help="Requests admitted at once; beyond: 503 + Retry-After.", min=1)
    ] = 64,
    timeout: Annotated[float, typer.Option(help="Seconds a request may take (queue wait included); then 504.")] = 120.0,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option("--cors-origin", help="Allow this browser origin (repeat); default: no CORS."),
    ] = None,
    workers: Annotated[int, typer.Option(help="Requests computed at the same time (threads).", min=1, max=64)] = 2,
    torch_threads: Annotated[int, typer.Option("--torch-threads", help="torch intra-op threads.", min=1)] = 1,
    max_body_mb: Annotated[
        float, typer.Option("--max-body-mb", help="Largest JSON body in MiB (413 beyond).", min=0.01)
    ] = 4.0,
    max_trace_mb: Annotated[
        float, typer.Option("--max-trace-mb", help="Largest uploaded Trace file in MiB (413 beyond).", min=0.01)
    ] = 64.0,
    shutdown_grace: Annotated[
        float, typer.Option("--shutdown-grace", help="Seconds running requests get at shutdown.", min=0)
    ] = 10.0,
    log_level: Annotated[str, typer.Option("--log-level", help="critical, error, warning, info, debug.")] = "info",
    access_log: Annotated[bool, typer.Option("--access-log/--no-access-log", help="Log every request.")] = True,
) -> None:
    """Serve generation, live streaming, explanations and scores over HTTP, with the web viewer at /."""
    from diffsight.errors import DiffsightError
    from diffsight.models.folder import resolve_model_path
    from diffsight.serve import ServeConfig, read_api_key, require_serve_extra, run_server

    require_serve_extra()
    specs = tuple(model or ())
    for spec in specs:
        resolve_model_path(spec)  # fail now, with the list of names, not in the background loader
    if log_level.lower() not in ("critical", "error", "warning", "info", "debug"):
        raise DiffsightError(f"--log-level must be critical, error, warning, info or debug, got {log_level!r}")
    config = ServeConfig(
        models=specs,
        host=host,
        port=port,
        api_key=read_api_key(api_key_file) if api_key_file is not None else None,
        artifacts=artifacts,
        max_queue=max_queue,
        workers=workers,
        timeout=timeout,
        cors_origins=tuple(cors_origin or ()),
        max_json_bytes=int(max_body_mb * 1024 * 1024),
        max_trace_bytes=int(max_trace_mb * 1024 * 1024),
        torch_threads=torch_threads,
        shutdown_grace=shutdown_grace,
    )
    if not config.is_loopback and config.api_key is None:
        typer.echo(
            f"warning: listening on {host} without --api-key-file: anyone who can reach this port can use it",
            err=True,
        )
    run_server(config, log_level=log_level.lower(), access_log=access_log)
