"""The FastAPI app: Label Studio's ML backend routes on top of :class:`batchlabel.serve.backend.Backend`.

Routes (the protocol Label Studio 1.23 calls, see ``docs/serve.md``):
- ``GET /health`` (and ``GET /``): ``{"status": "UP", "model_loaded": true, ...}``; async, never queued behind decodes
  (Label Studio gives it 1 s).
- ``POST /setup``: ``{"model_version": ...}``; async and constant-time (Label Studio gives it 3 s): the model was
  loaded when the app was created, never here. The ``access_token`` it carries is neither logged nor used.
- ``POST /predict``: interactive when ``params.context.result`` is non-empty, else batch; runs in the thread pool.
- ``POST /webhook``: ``START_TRAINING`` starts ``batchlabel train`` in the background and is answered at once;
  annotation events may start one (``train.every_n_annotations``, :mod:`batchlabel.serve.training`); other actions
  are accepted and ignored (debug log).
- ``POST /train``: Label Studio's older "Start training" (with every annotated task): as ``START_TRAINING``.
- ``GET /versions``: the one model version.

Errors: payload validation -> 422, image problems -> their 4xx (502 when Label Studio's upload store fails), every
answer ``{"error": "<what to fix>"}``. Unexpected exceptions are logged with a traceback and answered 500 with the
exception's class, never crash the process.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from batchlabel import __version__
from batchlabel.config import Config
from batchlabel.serve.backend import Backend, PredictError
from batchlabel.serve.embedding_lookup import EmbeddingProvider, StoreLike
from batchlabel.serve.fetch import ImageFetcher
from batchlabel.serve.middleware import (
    AccessLogMiddleware,
    BasicAuthMiddleware,
    BodyLimitMiddleware,
    LastResortMiddleware,
)
from batchlabel.serve.protocol import (
    HealthResponse,
    PredictRequest,
    PredictResponse,
    SetupRequest,
    SetupResponse,
    TrainRequest,
    WebhookRequest,
)
from batchlabel.serve.sources import ImageSourceError
from batchlabel.serve.threads import cpu_cores, torch_threads
from batchlabel.serve.training import ANNOTATION_ACTIONS, START_TRAINING, build_serve_training

log = logging.getLogger(__name__)

MODEL_CLASS = "batchlabel"


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def build_backend(config: Config, *, model: Any = None, store: StoreLike | None = None) -> tuple[Backend, Any]:
    """Load (or take) the model and store, and wire the backend. Returns ``(backend, fetcher)``."""
    from batchlabel.annotate.preannotate import model_version_for
    from batchlabel.infer.engine import build_engine
    from batchlabel.serve.allocator import release_free_memory
    from batchlabel.serve.request_counts import InteractiveRequestCounts

    # No store on the encoder: the provider looks up and stores itself (one lookup per miss, under its per-image lock).
    engine = build_engine(config.model, config.cache, model=model, store=store,  # type: ignore[arg-type]
                          batched=False, encoder_store=False, decoder="interactive")
    model, encoder = engine.model, engine.encoder
    fetcher = ImageFetcher(
        label_studio_url=config.label_studio.url,
        api_key=config.label_studio.api_key,
        timeout_s=config.label_studio.timeout_s,
    )
    encode_threads = cpu_cores()

    def encode(loaded: Any) -> Any:
        with torch_threads(encode_threads):
            embedding = encoder.encode_image(loaded)
        release_free_memory()  # the encode's freed temporaries: see serve/allocator.py
        return embedding

    provider = EmbeddingProvider(model_id=model.model_id, store=engine.store, encode=encode, fetch=fetcher.fetch)
    backend = Backend(
        config,
        decoder=engine.decoder,
        provider=provider,
        model_version=model_version_for(config, model.model_id),
        request_counts=InteractiveRequestCounts(config.cache.dir),
    )
    return backend, fetcher


def create_app(config: Config, *, model: Any = None, store: StoreLike | None = None,
               label_studio: tuple[str, str] | None = None) -> FastAPI:
    """The backend app. Loads the model now (once per process) unless ``model`` is given; never in ``/setup``.

    Args:
        config: the validated config.
        model: a ``LoadedModel`` to use instead of loading ``config.model``.
        store: an ``EmbeddingStore`` to use instead of opening ``config.embeddings_dir``.
        label_studio: ``(url, api_key)`` of the embedded Label Studio ``batchlabel up`` runs (a background
            ``train`` attaches to it).
    """
    backend, fetcher = build_backend(config, model=model, store=store)
    training = build_serve_training(config, label_studio=label_studio)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("backend ready model_version=%s", backend.model_version)
        yield
        fetcher.close()
        if backend.request_counts is not None:
            backend.request_counts.close()  # writes the queued counts
        await run_in_threadpool(training.close)
        log.info("backend stopped")

    app = FastAPI(title="batchlabel ML backend", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.backend = backend
    app.state.training = training

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message = _validation_message(exc)
        log.warning("bad request path=%s: %s", request.url.path, message)
        return JSONResponse({"error": message}, status_code=422)

    @app.exception_handler(ImageSourceError)
    async def _image(request: Request, exc: ImageSourceError) -> JSONResponse:
        log.warning("image error path=%s status=%d: %s", request.url.path, exc.status_code, exc.message)
        return JSONResponse({"error": exc.message}, status_code=exc.status_code)

    @app.exception_handler(PredictError)
    async def _predict_error(request: Request, exc: PredictError) -> JSONResponse:
        log.warning("predict error path=%s status=%d: %s", request.url.path, exc.status_code, exc.message)
        return JSONResponse({"error": exc.message}, status_code=exc.status_code)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # e.g. 404/405, or a body FastAPI cannot parse (over-nested JSON): the same {"error": ...} shape as the rest
        log.warning("http error path=%s status=%d: %s", request.url.path, exc.status_code, exc.detail)
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    def health() -> HealthResponse:
        return HealthResponse(
            status="UP", model_class=MODEL_CLASS, model_loaded=True,
            model_id=backend.provider.model_id, model_version=backend.model_version,
        )

    @app.get("/health", response_model=HealthResponse)
    async def get_health() -> HealthResponse:
        return health()

    @app.get("/", response_model=HealthResponse)
    async def get_root() -> HealthResponse:
        return health()

    @app.post("/setup", response_model=SetupResponse)
    async def post_setup(body: SetupRequest) -> SetupResponse:
        log.info("setup project=%s hostname=%s", body.project, body.hostname)
        if body.schema_:
            try:
                names = backend.schema_for(body.schema_).names
            except PredictError as exc:
                log.warning("setup project=%s: %s", body.project, exc.message)
            else:
                if names.brush is None:
                    log.warning("setup project=%s: the labeling config has no BrushLabels tool; interactive "
                                "answers will be refused", body.project)
                if names.keypoint is None and names.rectangle is None:
                    log.warning("setup project=%s: the labeling config has no smart KeyPointLabels or "
                                "RectangleLabels tool", body.project)
        return SetupResponse(model_version=backend.model_version)

    @app.get("/versions")
    async def get_versions() -> dict[str, list[str]]:
        return {"versions": [backend.model_version]}

    def answer_json(body: PredictRequest) -> str:
        answer = backend.interactive if body.is_interactive else backend.batch
        # Serialised by pydantic-core directly (FastAPI's generic encoder took ~80 ms for a 60k-run brush RLE), in
        # the worker thread: a megabyte of RLE takes ~15 ms that the event loop must not be blocked for.
        return answer(body).model_dump_json()

    @app.post("/predict", response_model=PredictResponse)
    async def post_predict(body: PredictRequest) -> Response:
        return Response(await run_in_threadpool(answer_json, body), media_type="application/json")

    @app.post("/webhook")
    async def post_webhook(body: WebhookRequest) -> dict[str, str]:
        project_id = body.project.get("id") if isinstance(body.project, dict) else body.project
        if body.action == START_TRAINING:
            log.info("webhook action=%s project=%s", body.action, project_id)
            return training.start("Label Studio: Start training", body.project)
        if body.action in ANNOTATION_ACTIONS:
            log.info("webhook action=%s project=%s", body.action, project_id)
            # the trigger reads the newest model's manifest: off the event loop
            return await run_in_threadpool(training.on_annotations, body.action, body.project)
        log.debug("webhook action=%s project=%s ignored", body.action, project_id)
        return {"status": "ok"}

    @app.post("/train")
    async def post_train(body: TrainRequest) -> dict[str, str]:
        log.info("train project=%s annotated_tasks=%d", body.project, len(body.annotations))
        return training.start("Label Studio: Start training (/train)")

    app.add_middleware(LastResortMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=int(config.serve.max_request_mb * 2**20))
    if config.serve.username is not None and config.serve.password is not None:
        app.add_middleware(BasicAuthMiddleware, username=config.serve.username, password=config.serve.password)
    app.add_middleware(AccessLogMiddleware)
    return app
