"""The router's FastAPI app: wiring only (services, routes, error rendering, middleware)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from localmodel import __version__
from localmodel_router import metrics
from localmodel_router.admission import Admission
from localmodel_router.auth import ApiKeys
from localmodel_router.backends import BackendPool
from localmodel_router.balancer import Balancer
from localmodel_router.deps import Services, require_api_key, require_api_key_or_x_api_key
from localmodel_router.disconnect import ClientDisconnectedError
from localmodel_router.discovery import Discovery
from localmodel_router.dispatch import Dispatcher
from localmodel_router.errors import BadRequestError, NotFoundError, RouterError, error_response
from localmodel_router.hold import Hold
from localmodel_router.load import ModelLoad
from localmodel_router.middleware import BodyLimit, RequestMetrics
from localmodel_router.openapi import use_served_openapi
from localmodel_router.routes import (
    audio,
    chat,
    completions,
    embeddings,
    health,
    messages,
    models,
    rerank,
    responses_api,
    scaling,
    tokenization,
)
from localmodel_router.serving.audio import AudioService
from localmodel_router.serving.chat import ChatService
from localmodel_router.serving.completions import CompletionService
from localmodel_router.serving.embeddings import EmbeddingService
from localmodel_router.serving.messages import MessagesService
from localmodel_router.serving.rerank import RerankService
from localmodel_router.serving.responses import ResponsesService
from localmodel_router.serving.tokenization import TokenizationService
from localmodel_router.settings import RouterSettings

log = logging.getLogger(__name__)


def create_app(settings: RouterSettings, discovery: Discovery, load: ModelLoad | None = None) -> FastAPI:
    """The router over `discovery`'s models; `load` (requests per model) is shared with whoever scales."""
    pool = BackendPool(settings.connect_timeout_seconds)
    load = load or ModelLoad()
    admission = Admission(
        settings.max_in_flight_per_model, settings.max_waiting_per_model, settings.queue_timeout_seconds
    )
    dispatcher = Dispatcher(
        pool,
        Balancer(),
        Hold(discovery, settings.max_held_per_model, settings.hold_timeout_seconds),
        admission,
        load,
        settings.backend_tries,
        settings.request_timeout_seconds,
        settings.unreachable_grace_seconds,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await discovery.start()
        try:
            yield
        finally:
            await discovery.close()
            await pool.close()

    api_keys = ApiKeys([key.get_secret_value() for key in settings.api_keys])
    # With keys, the API's description is behind them too (GET /openapi.json with the key), and the
    # browsable pages are off: a browser cannot send the key, and they would list every route anyway.
    public_docs = not api_keys.enabled
    app = FastAPI(
        title="localmodel router",
        version=__version__,
        lifespan=lifespan,
        openapi_url="/openapi.json" if public_docs else None,
        docs_url="/docs" if public_docs else None,
        redoc_url="/redoc" if public_docs else None,
    )
    use_served_openapi(app)
    if not public_docs:

        @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(require_api_key)])
        async def openapi_document() -> JSONResponse:
            return JSONResponse(app.openapi())

    # A request of many prompts or inputs takes at most half a model's places at once, so that other
    # clients' requests still get in beside it.
    inputs = {
        "max_inputs": settings.max_inputs_per_request,
        "inputs_at_once": max(1, settings.max_in_flight_per_model // 2),
    }
    app.state.services = Services(
        settings=settings,
        discovery=discovery,
        api_keys=api_keys,
        load=load,
        chat=ChatService(discovery, dispatcher, **inputs),  # n answers count as inputs
        completions=CompletionService(discovery, dispatcher, **inputs),
        embeddings=EmbeddingService(discovery, dispatcher, **inputs),
        messages=MessagesService(discovery, dispatcher),
        rerank=RerankService(discovery, dispatcher),
        responses=ResponsesService(discovery, dispatcher),
        tokenization=TokenizationService(discovery, dispatcher),
        audio=AudioService(discovery, dispatcher, settings.max_audio_bytes),
    )
    # Without keys there is nothing to check: no dependency at all, rather than one that returns at once.
    dependencies = [Depends(require_api_key)] if api_keys.enabled else []
    for api in (
        models.router,
        chat.router,
        completions.router,
        embeddings.router,
        rerank.router,
        responses_api.router,
        tokenization.router,
        audio.router,
    ):
        app.include_router(api, dependencies=dependencies)
    # Anthropic's Messages API: its clients send the key as `x-api-key`, and its errors have their shape.
    anthropic_keys = [Depends(require_api_key_or_x_api_key)] if api_keys.enabled else []
    app.include_router(messages.router, dependencies=anthropic_keys)
    app.include_router(health.router)
    app.include_router(scaling.router)
    _install_error_handlers(app)

    def served_name(asked: str | None) -> str:
        route = discovery.table().get(asked)
        return route.name if route is not None else metrics.UNKNOWN_MODEL

    # Outermost last: metrics see every request, including the ones the body limit refuses.
    app.add_middleware(
        BodyLimit, max_bytes=settings.max_request_bytes, path_limits=audio.body_limits(settings)
    )
    app.add_middleware(RequestMetrics, served_name=served_name)
    return app


def _not_served(app: FastAPI, request: Request) -> str:
    """What a client that asked for a path the router has no route for needs: which path, and the API."""
    api = sorted(path for path in app.openapi()["paths"] if path.startswith("/v1/"))  # built once, cached
    return f"{request.method} {request.url.path} is not served here. The API: {', '.join(api)}"


def _install_error_handlers(app: FastAPI) -> None:
    """Every error leaves in OpenAI's shape."""

    @app.exception_handler(RouterError)
    async def router_error(_: Request, error: RouterError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
        location = [str(part) for part in first["loc"] if part != "body"]
        param = ".".join(location) or None
        message = f"{param}: {first['msg']}" if param else str(first["msg"])
        return error_response(BadRequestError(message, param=param))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        if error.status_code == 404:
            return error_response(NotFoundError(_not_served(app, request)))
        rendered = RouterError(str(error.detail))
        body = rendered.body()
        body["error"]["type"] = "invalid_request_error" if error.status_code < 500 else "server_error"
        return JSONResponse(body, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(ClientDisconnectedError)
    async def client_gone(_: Request, __: ClientDisconnectedError) -> Response:
        return Response(status_code=499)  # nginx's "client closed request"; nobody reads it

    @app.exception_handler(Exception)
    async def unexpected(_: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=error)
        return error_response(RouterError("The router failed unexpectedly; see its log."))
