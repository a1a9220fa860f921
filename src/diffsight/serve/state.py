"""Everything one app instance holds: its config, models, trace store and work queue (no module globals).

Models load in a background thread when the app starts, so ``/healthz`` answers at once and ``/readyz`` says
503 until every model is loaded and has run one warm-up step (the first network call of a fresh process is
slow; the warm-up keeps it out of the first user's latency).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import torch

from diffsight.errors import DiffsightError
from diffsight.models.folder import LoadedModel, load_model, shipped_models
from diffsight.sampling.registry import SAMPLERS
from diffsight.serve.config import ServeConfig
from diffsight.serve.schemas import MAX_BATCH, MAX_STEPS, GenerateRequest
from diffsight.serve.store import TraceStore
from diffsight.serve.work import WorkQueue
from diffsight.trace.record import Trace

__all__ = ["ApiError", "ServerState"]

log = logging.getLogger("diffsight.serve")


class ApiError(Exception):
    """An HTTP error with a message that says what to fix (the app turns it into ``{"detail": ...}``)."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


class ServerState:
    """The models, store and queue of one app."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.models: dict[str, LoadedModel] = {}
        self.specs = tuple(config.models) or tuple(shipped_models())
        if not self.specs:
            raise DiffsightError("no model to serve: pass --model NAME|DIR (no shipped model is installed)")
        self.store = TraceStore(config.artifacts)
        self.queue = WorkQueue(config.max_queue, config.workers, config.timeout)
        package_static = Path(__file__).parent / "static"
        self.static_dir = config.static_dir if config.static_dir is not None else package_static
        self.loaded = threading.Event()
        self.load_error: str | None = None
        self.stopping = False
        self._loader: threading.Thread | None = None

    # -- loading -------------------------------------------------------------------------------------------------
    def start_loading(self) -> None:
        """Load every model in a background thread (``/readyz`` reports when done)."""
        self._loader = threading.Thread(target=self._load_all, name="diffsight-load-models", daemon=True)
        self._loader.start()

    def _load_all(self) -> None:
        try:
            self.store.check()
            for spec in self.specs:
                model = load_model(spec)
                if model.name in self.models:
                    raise DiffsightError(f"two models are called {model.name!r}: serve one of them")
                model.weights_sha256()  # hashed once, now, not inside the first request
                with torch.no_grad():
                    self._warm_up(model)
                self.models[model.name] = model
                log.info("loaded model %s from %s", model.name, model.path)
        except Exception as err:  # reported by /readyz and the log; the process keeps answering health checks
            self.load_error = f"{type(err).__name__}: {err}"
            log.error("model loading failed: %s", self.load_error)
            return
        self.loaded.set()

    @staticmethod
    def _warm_up(model: LoadedModel) -> None:
        from diffsight.serve.render import image_uri
        from diffsight.trace.run import record_trace

        trace = record_trace(model, seed=0, n=1, steps=2)
        if trace.is_image:
            image_uri(trace.final[0])

    def wait_loaded(self, timeout: float | None = None) -> bool:
        return self.loaded.wait(timeout)

    def require_ready(self) -> None:
        """Raise 503 while models load (or after loading failed) and while shutting down."""
        if self.stopping:
            raise ApiError(503, "the server is shutting down", {"Retry-After": "5"})
        if self.load_error is not None:
            raise ApiError(503, f"the server could not load its models: {self.load_error}")
        if not self.loaded.is_set():
            raise ApiError(503, "the models are still loading; retry shortly", {"Retry-After": "2"})

    # -- lookups -------------------------------------------------------------------------------------------------
    def model(self, name: str) -> LoadedModel:
        """The served model ``name`` (422 listing the served names when unknown)."""
        self.require_ready()
        found = self.models.get(name)
        if found is None:
            names = ", ".join(sorted(self.models))
            raise ApiError(422, f"model: no model called {name[:80]!r} is served here; choose one of: {names}")
        return found

    def model_of_trace(self, trace: Trace) -> LoadedModel:
        """The served model a trace was recorded with, checked by its weights' hash."""
        info = trace.meta.get("model") or {}
        name = str(info.get("name"))
        model = self.models.get(name)
        if model is None:
            names = ", ".join(sorted(self.models))
            raise ApiError(
                422, f"trace {trace.id} was recorded with model {name!r}, which is not served here ({names})"
            )
        if info.get("sha256") and info["sha256"] != model.weights_sha256():
            raise ApiError(
                422,
                f"trace {trace.id} was recorded with other weights of {name} ({str(info['sha256'])[:12]}...) than "
                f"the ones served here ({model.weights_sha256()[:12]}...)",
            )
        return model

    def check_generate(self, body: GenerateRequest) -> LoadedModel:
        """The model of a generate request, after every check that depends on it (422 with the reason)."""
        model = self.model(body.model)
        if body.sampler not in SAMPLERS:
            raise ApiError(422, f"sampler: unknown sampler {body.sampler[:40]!r}; choose one of: {', '.join(SAMPLERS)}")
        if body.label is not None:
            if model.num_classes == 0:
                raise ApiError(422, f"label: {model.name} is unconditional; send label null")
            if body.label >= model.num_classes:
                raise ApiError(422, f"label: {model.name} has classes 0..{model.num_classes - 1}, got {body.label}")
        if body.guidance != 1.0:
            if body.label is None:
                raise ApiError(422, "guidance: classifier-free guidance needs a class; send a label")
            if model.null_class is None:
                raise ApiError(422, f"guidance: {model.name} has no null class; send guidance 1.0")
        if len(model.event_shape) != 3:
            raise ApiError(422, f"model: {model.name} samples vectors, not images; the service streams images")
        return model

    def model_listing(self) -> list[dict[str, Any]]:
        """GET /v1/models."""
        self.require_ready()
        out = []
        for name, m in sorted(self.models.items()):
            sampling = m.info.get("sampling") or {}
            out.append(
                {
                    "name": name,
                    "event_shape": list(m.event_shape),
                    "num_classes": m.num_classes,
                    "class_names": list(m.class_names),
                    "null_class": m.null_class,
                    "samplers": list(SAMPLERS),
                    "default_sampler": str(sampling.get("sampler", "dpmpp_2m")),
                    "default_steps": int(sampling.get("steps", 20)),
                    "max_steps": MAX_STEPS,
                    "max_n": MAX_BATCH,
                    "kind": m.kind,
                    "sigma_min": m.sigma_min,
                    "sigma_max": m.sigma_max,
                    "sha256": m.weights_sha256(),
                }
            )
        return out
