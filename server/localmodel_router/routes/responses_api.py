"""POST /v1/responses (named so beside `responses.py`, which renders JSON bodies for every route)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from localmodel_router.deps import ServicesDep
from localmodel_router.disconnect import unless_disconnected
from localmodel_router.protocol.responses import CreateResponseRequest
from localmodel_router.routes.responses import json_body
from localmodel_router.streaming import open_sse

router = APIRouter()


@router.post("/v1/responses", response_model=None)
async def create_response(body: CreateResponseRequest, request: Request, services: ServicesDep) -> Response:
    """A model response (OpenAI's Responses API, stateless), streamed as named server-sent events when
    `stream` is true."""
    request.state.model = body.model
    if body.stream:
        keepalive = services.settings.stream_keepalive_seconds
        return await open_sse(request, services.responses.stream(body), keepalive)
    return json_body(await unless_disconnected(request, services.responses.create(body)))
