from __future__ import annotations

from fastapi import APIRouter, Request, Response

from localmodel_router.deps import ServicesDep
from localmodel_router.disconnect import unless_disconnected
from localmodel_router.protocol.chat import ChatCompletionRequest
from localmodel_router.routes.responses import json_body
from localmodel_router.streaming import sse_response

router = APIRouter()


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(
    body: ChatCompletionRequest, request: Request, services: ServicesDep
) -> Response:
    """Chat completion, streamed as server-sent events when `stream` is true."""
    request.state.model = body.model
    if body.stream:
        # Opening the stream waits for the first token: a client leaving meanwhile cancels it too.
        return sse_response(await unless_disconnected(request, services.chat.stream(body)))
    return json_body(await unless_disconnected(request, services.chat.complete(body)))
