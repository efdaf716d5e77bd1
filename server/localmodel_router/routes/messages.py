from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from localmodel_router.deps import ServicesDep
from localmodel_router.disconnect import unless_disconnected
from localmodel_router.messages_errors import MessagesRoute
from localmodel_router.messages_streaming import open_stream
from localmodel_router.protocol.messages import (
    CountTokensRequest,
    ErrorBody,
    MessagesRequest,
    MessageTokensCount,
)
from localmodel_router.routes.responses import json_body

router = APIRouter(route_class=MessagesRoute)

# Documented in Anthropic's error shape (the other routes document OpenAI's).
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 404, 429, 502, 503, 504, "default")
}


@router.post("/v1/messages", response_model=None, responses=_ERRORS)
async def create_message(body: MessagesRequest, request: Request, services: ServicesDep) -> Response:
    """Anthropic's Messages API, streamed as Anthropic's server-sent events when `stream` is true."""
    request.state.model = body.model
    if body.stream:
        keepalive = services.settings.stream_keepalive_seconds
        return await open_stream(request, services.messages.stream(body), keepalive)
    return json_body(await unless_disconnected(request, services.messages.create(body)))


@router.post("/v1/messages/count_tokens", response_model=MessageTokensCount, responses=_ERRORS)
async def count_tokens(body: CountTokensRequest, request: Request, services: ServicesDep) -> Response:
    """The number of tokens a Messages request's prompt takes (system, tools and chat template included)."""
    request.state.model = body.model
    return json_body(await services.messages.count_tokens(body))
