"""The HTTP API (FastAPI): ``create_app(config)`` builds one app with its own state; nothing lives at module level.

Endpoints (docs/serve.md has the request and response of each; OpenAPI at ``/docs`` and ``/openapi.json``):

- ``GET /healthz``, ``GET /readyz``: the process answers; the models are loaded.
- ``GET /v1/models``, ``GET /v1/status``: what is served; the queue's counts.
- ``POST /v1/generate``: samples, their trace id and the images.
- ``POST /v1/generate/stream``: the same as Server-Sent Events, one ``step`` event per sampler step as it happens.
- ``POST /v1/explain``, ``POST /v1/score``: explanations of a trace; bits/dim and surprise maps of images.
- ``POST /v1/reconstruct``, ``POST /v1/impute``: an image inverse problem with uncertainty; a CSV's empty cells
  filled by a model trained on its observed ones.
- ``POST /v1/series/score``: one anomaly score per window of a series, from a model trained on it.
- ``GET /v1/traces/{id}``, ``POST /v1/traces``, ``GET /v1/traces/{id}/frames``: download, upload, per-step frames.
- ``GET /`` and ``/static/*``: the web viewer.

Every error is ``{"detail": "<what to fix>"}`` with a 4xx status (5xx only for the designed 503 of a full queue,
504 past the time limit, and bugs).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from diffsight._version import __version__
from diffsight.errors import DiffsightError
from diffsight.serve import jobs
from diffsight.serve.cancel import Cancelled, Job, TimedOut
from diffsight.serve.config import ServeConfig
from diffsight.serve.middleware import ApiKeyMiddleware, LimitsMiddleware
from diffsight.serve.render import trace_frames
from diffsight.serve.schemas import (
    MAX_BATCH,
    ExplainRequest,
    GenerateRequest,
    ImputeRequest,
    ReconstructRequest,
    ScoreRequest,
    SeriesScoreRequest,
)
from diffsight.serve.state import ApiError, ServerState
from diffsight.serve.store import TraceNotFound, is_trace_id
from diffsight.serve.work import QueueFull

__all__ = ["create_app"]

log = logging.getLogger("diffsight.serve")

T = TypeVar("T")

TraceId = Annotated[str, Path(description="16 lowercase hex digits (the trace's content-hash id)")]


# --- errors ---------------------------------------------------------------------------------------------------


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _validation_detail(err: RequestValidationError) -> tuple[int, str]:
    """(status, one readable line) for pydantic's error list: 400 for unparseable JSON, 422 otherwise."""
    parts = []
    status = 422
    for e in err.errors():
        loc = [str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path")]
        if e.get("type") == "json_invalid":
            status = 400
            reason = (e.get("ctx") or {}).get("error", "")
            parts.append(f"the body is not valid JSON ({reason}); send a JSON object")
            continue
        where = ".".join(loc) or "body"
        message = str(e.get("msg", "invalid"))
        if e.get("type") == "missing" and where == "body":
            parts.append("the request needs a JSON object body")
            continue
        if e.get("type") == "extra_forbidden":
            message = "unknown field (check its spelling against /docs)"
        elif "input" in e and e.get("type") not in ("missing",):
            message += f" (got {_short(e['input'])})"
        parts.append(f"{where}: {message}")
    return status, "; ".join(parts[:8]) or "invalid request"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        status, detail = _validation_detail(exc)
        return _error(status, detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such endpoint: {request.method} {request.url.path[:100]} (see /docs)"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path[:100]} (see /docs)"
        return _error(exc.status_code, detail, dict(exc.headers or {}))

    @app.exception_handler(TraceNotFound)
    async def _missing(_request: Request, exc: TraceNotFound) -> JSONResponse:
        return _error(404, str(exc))

    @app.exception_handler(DiffsightError)
    async def _bad_input(_request: Request, exc: DiffsightError) -> JSONResponse:
        return _error(422, str(exc))

    @app.exception_handler(QueueFull)
    async def _full(_request: Request, exc: QueueFull) -> JSONResponse:
        return _error(503, str(exc), {"Retry-After": str(exc.retry_after)})

    @app.exception_handler(TimedOut)
    async def _slow(_request: Request, exc: TimedOut) -> JSONResponse:
        return _error(504, str(exc))

    @app.exception_handler(Exception)
    async def _bug(_request: Request, exc: Exception) -> JSONResponse:
        code, detail = _status_of(exc)
        return _error(code, detail)

    @app.exception_handler(Cancelled)
    async def _cancelled(_request: Request, exc: Cancelled) -> JSONResponse:
        return _error(503, f"the request was cancelled: {exc}", {"Retry-After": "5"})


def _status_of(exc: BaseException) -> tuple[int, str]:
    """The HTTP status and message an exception from the work maps to (for the stream's ``error`` event)."""
    if isinstance(exc, ApiError):
        return exc.status, exc.detail
    if isinstance(exc, TraceNotFound):
        return 404, str(exc)
    if isinstance(exc, DiffsightError):
        return 422, str(exc)
    if isinstance(exc, TimedOut):
        return 504, str(exc)
    if isinstance(exc, (Cancelled, asyncio.CancelledError)):
        return 503, f"the request was cancelled: {exc or 'the server is shutting down'}"
    log.error("internal error", exc_info=exc)
    return 500, f"internal error ({type(exc).__name__}); the server log has the details"


# --- waiting for work -----------------------------------------------------------------------------------------


async def _wait(request: Request, job: Job, future: asyncio.Future[T]) -> T:
    """The work's result; cancels it when the client disconnects, the handler is cancelled or time runs out."""
    try:
        while True:
            done, _ = await asyncio.wait({future}, timeout=0.2)
            if done:
                return future.result()
            if await request.is_disconnected():
                job.cancel("the client disconnected")
                raise Cancelled("the client disconnected")
            if job.remaining() < -2.0:  # the work checks its deadline itself; this catches a stuck call
                job.cancel("time limit")
                raise TimedOut(f"the request took longer than the server's limit of {job.timeout:g} s")
    finally:
        if not future.done():
            job.cancel("the request ended before its work")
            future.add_done_callback(_consume)


def _consume(future: asyncio.Future[Any]) -> None:
    """Retrieve the outcome of work nobody waits for any more (asyncio would log it as never retrieved)."""
    if not future.cancelled():
        future.exception()


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


# --- the app --------------------------------------------------------------------------------------------------


def create_app(config: ServeConfig) -> FastAPI:
    """A FastAPI app serving ``config``'s models; models load in the background when the app starts."""
    state = ServerState(config)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state.start_loading()
        yield
        state.stopping = True
        await asyncio.to_thread(state.queue.close, config.shutdown_grace)

    app = FastAPI(
        title="diffsight",
        version=__version__,
        summary="Generate, stream, explain and score diffusion samples.",
        lifespan=lifespan,
    )
    app.state.diffsight = state
    _install_error_handlers(app)

    # -- health ----------------------------------------------------------------------------------------------
    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process answers (no key needed)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "models still loading"}})
    async def readyz() -> JSONResponse:
        """The models are loaded and the server takes work (no key needed)."""
        try:
            state.require_ready()
        except ApiError as err:
            return JSONResponse({"status": "not ready", "detail": err.detail}, status_code=503, headers=err.headers)
        return JSONResponse({"status": "ready", "models": sorted(state.models)})

    # -- the viewer --------------------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def viewer() -> Response:
        index = state.static_dir / "index.html"
        if not index.is_file():
            return _error(404, "the web viewer is not installed in this build; the API is under /v1 (see /docs)")
        return FileResponse(index, media_type="text/html", headers={"Cache-Control": "no-cache"})

    if state.static_dir.is_dir():
        app.mount("/static", StaticFiles(directory=state.static_dir), name="static")

    # -- the API -----------------------------------------------------------------------------------------------
    v1 = APIRouter(prefix="/v1")
    budget = config.trace_memory_budget

    @v1.get("/models", tags=["models"])
    async def models() -> dict[str, Any]:
        """Served models, their classes, samplers and limits."""
        return {"models": state.model_listing()}

    @v1.get("/status", tags=["models"])
    async def status() -> dict[str, Any]:
        """The work queue: running, queued and finished requests by outcome."""
        return {"ready": state.loaded.is_set(), "queue": state.queue.status()}

    @v1.post("/generate", tags=["generate"])
    async def generate(body: GenerateRequest, request: Request) -> dict[str, Any]:
        """Generate ``n`` samples; the run is stored as a Trace (download it from /v1/traces/{trace_id})."""
        model = state.check_generate(body)
        job = state.queue.admit()
        future = state.queue.submit(job, jobs.run_generate, model, body, job, state.store, memory_budget=budget)
        return await _wait(request, job, future)

    @v1.post(
        "/generate/stream",
        tags=["generate"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}, "description": "start, step..., final | error"}},
    )
    async def generate_stream(body: GenerateRequest) -> StreamingResponse:
        """Generate as Server-Sent Events: ``start``, one ``step`` per sampler step as it happens (x0_hat
        preview of sample 0, sigma, scalars), then ``final`` (trace id, image) or ``error`` (status, detail)."""
        model = state.check_generate(body)
        job = state.queue.admit()
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def on_step(data: dict[str, Any]) -> None:  # called in the worker thread
            loop.call_soon_threadsafe(events.put_nowait, ("step", data))

        future = state.queue.submit(
            job, jobs.run_generate, model, body, job, state.store, memory_budget=budget, on_step=on_step
        )
        future.add_done_callback(lambda _f: events.put_nowait(("done", None)))
        start = {"model": model.name, "steps": body.steps, "sampler": body.sampler, "seed": body.seed}
        start.update({"label": body.label, "n": body.n, "guidance": body.guidance})

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield _sse("start", start)
                while True:
                    try:
                        kind, data = await asyncio.wait_for(events.get(), timeout=max(job.remaining(), 0.0) + 5.0)
                    except TimeoutError:
                        job.cancel("time limit")
                        yield _sse("error", {"status": 504, "detail": "the request ran past the server's time limit"})
                        return
                    if kind == "step":
                        yield _sse("step", data)
                        continue
                    try:
                        result = future.result()
                    except BaseException as exc:  # noqa: BLE001 - every failure becomes an error event
                        code, detail = _status_of(exc)
                        yield _sse("error", {"status": code, "detail": detail})
                        return
                    yield _sse("final", result)
                    return
            finally:
                if not future.done():
                    job.cancel("the client disconnected")
                    future.add_done_callback(_consume)

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    @v1.post("/explain", tags=["explain"])
    async def explain(body: ExplainRequest, request: Request) -> dict[str, Any]:
        """Explain a stored trace (``trace_id``) or a new run (the generate options): narrative, curves and maps."""
        state.require_ready()
        if body.trace_id is not None:
            trace = await asyncio.to_thread(state.store.get, body.trace_id)
            model = state.model_of_trace(trace)
            if body.sample >= trace.batch_size:
                raise ApiError(422, f"sample: trace {trace.id} holds samples 0..{trace.batch_size - 1}")
            job = state.queue.admit()
            future = state.queue.submit(job, jobs.run_explain, model, trace, body, job)
        else:
            model = state.check_generate(body.generate_request())
            if body.sample >= body.n:
                raise ApiError(422, f"sample: the run has samples 0..{body.n - 1}, got {body.sample}")
            job = state.queue.admit()
            future = state.queue.submit(
                job, jobs.run_generate_and_explain, model, body, job, state.store, memory_budget=budget
            )
        return await _wait(request, job, future)

    @v1.post("/score", tags=["explain"])
    async def score(body: ScoreRequest, request: Request) -> dict[str, Any]:
        """Bits/dim and a per-pixel surprise map of each image (8-bit PNG/JPEG at the model's resolution or a
        multiple of it); with ``label``, also the information the class carries about each image."""
        model = state.model(body.model)
        if len(model.event_shape) != 3:
            raise ApiError(422, f"model: {model.name} is not an image model")
        if body.label is not None and not 0 <= body.label < model.num_classes:
            raise ApiError(422, f"label: {model.name} has {model.num_classes} classes; got {body.label}")
        job = state.queue.admit()
        future = state.queue.submit(
            job,
            jobs.run_score,
            model,
            body,
            job,
            max_side=config.max_image_side,
            max_bytes=config.max_json_bytes,
        )
        return await _wait(request, job, future)

    @v1.post("/reconstruct", tags=["tasks"])
    async def reconstruct(body: ReconstructRequest, request: Request) -> dict[str, Any]:
        """Solve an image inverse problem (inpaint, denoise, superres, deblur, ct, mri) with the model as the
        prior: K posterior samples give the mean, a per-pixel std and, with ``intervals``, calibrated bounds;
        with ``simulate`` the image is clean, is measured first, and the answer is scored against it."""
        from diffsight.serve.task_jobs import run_reconstruct

        model = state.model(body.model)
        if len(model.event_shape) != 3:
            raise ApiError(422, f"model: {model.name} is not an image model")
        job = state.queue.admit()
        future = state.queue.submit(
            job, run_reconstruct, model, body, job, max_side=config.max_image_side, max_bytes=config.max_json_bytes
        )
        return await _wait(request, job, future)

    @v1.post("/impute", tags=["tasks"], responses={413: {"description": "more rows or columns than the limit"}})
    async def impute(body: ImputeRequest, request: Request) -> dict[str, Any]:
        """Fill the empty cells of a CSV table with a diffusion model trained on its own observed cells
        (bounded: rows, columns and training steps), with per-cell split-conformal intervals."""
        from diffsight.serve.task_jobs import TableTooLarge, parse_table, run_impute

        state.require_ready()
        try:
            frame = await asyncio.to_thread(parse_table, body.csv)
        except TableTooLarge as err:
            raise ApiError(413, str(err)) from None
        job = state.queue.admit()
        future = state.queue.submit(job, run_impute, frame, body, job)
        return await _wait(request, job, future)

    @v1.post("/series/score", tags=["tasks"], responses={413: {"description": "more rows or columns than the limit"}})
    async def series_score(body: SeriesScoreRequest, request: Request) -> dict[str, Any]:
        """Train a series model on the posted series (or its first ``train_rows``) and score every window for how
        surprising its last value is (``z``: calibrated forecast error in predictive standard deviations)."""
        from diffsight.serve.task_jobs import TableTooLarge, parse_series, run_series_score

        state.require_ready()
        try:
            data = await asyncio.to_thread(parse_series, body)
        except TableTooLarge as err:
            raise ApiError(413, str(err)) from None
        job = state.queue.admit()
        future = state.queue.submit(job, run_series_score, data, body, job)
        return await _wait(request, job, future)

    @v1.get(
        "/traces/{trace_id}",
        tags=["traces"],
        response_class=Response,
        responses={200: {"content": {"application/octet-stream": {}}}},
    )
    async def download_trace(trace_id: TraceId) -> Response:
        """The Trace file (safetensors with the metadata in its header), as written by ``save_trace``."""
        if not is_trace_id(trace_id):
            raise ApiError(400, "a trace id is 16 lowercase hex digits")
        data = await asyncio.to_thread(state.store.get_bytes, trace_id)
        disposition = f'attachment; filename="{trace_id}.trace.safetensors"'
        return Response(data, media_type="application/octet-stream", headers={"Content-Disposition": disposition})

    @v1.post("/traces", tags=["traces"], status_code=201)
    async def upload_trace(request: Request) -> dict[str, Any]:
        """Store a Trace file (raw bytes, ``Content-Type: application/octet-stream``); it is validated and
        stored under its own content-hash id."""
        from diffsight.trace.io import trace_from_bytes

        data = await request.body()
        if not data:
            raise ApiError(400, "the body is empty: send the bytes of a .trace.safetensors file")
        try:
            trace = await asyncio.to_thread(trace_from_bytes, data, where="the uploaded file")
        except DiffsightError as err:
            raise ApiError(400, str(err)) from None
        trace_id = await asyncio.to_thread(state.store.put, trace, data)
        return {"trace_id": trace_id, "num_steps": trace.num_steps, "n": trace.batch_size}

    @v1.get("/traces/{trace_id}/frames", tags=["traces"])
    async def frames(
        trace_id: TraceId,
        sample: Annotated[int, Query(ge=0, le=MAX_BATCH - 1, description="which sample")] = 0,
    ) -> dict[str, Any]:
        """Every recorded step of one sample: the noisy state, x0_hat and the change map, as PNG data URIs."""
        if not is_trace_id(trace_id):
            raise ApiError(400, "a trace id is 16 lowercase hex digits")
        trace = await asyncio.to_thread(state.store.get, trace_id)
        return await asyncio.to_thread(trace_frames, trace, sample)

    app.include_router(v1)

    # -- middleware (the last added runs first) ------------------------------------------------------------------
    app.add_middleware(
        LimitsMiddleware,
        json_limit=config.max_json_bytes,
        raw_limits={"/v1/traces": ("application/octet-stream", config.max_trace_bytes)},
    )
    if config.api_key is not None:
        app.add_middleware(ApiKeyMiddleware, key=config.api_key)
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return app
