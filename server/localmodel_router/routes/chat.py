from __future__ import annotations

from fastapi import APIRouter, Request, Response

from localmodel_router.deps import ServicesDep
from localmodel_router.disconnect import unless_disconnected
from localmodel_router.protocol.chat import ChatCompletionRequest
from localmodel_router.routes.responses import json_body
from localmodel_router.streaming import open_sse

router = APIRouter()


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(
    body: ChatCompletionRequest, request: Request, services: ServicesDep
) -> Response:
    """Chat completion, streamed as server-sent events when `stream` is true."""
    request.state.model = body.model
    if body.stream:
        keepalive = services.settings.stream_keepalive_seconds
        return await open_sse(request, services.chat.stream(body), keepalive)
    return json_body(await unless_disconnected(request, services.chat.complete(body)))
