from __future__ import annotations

from fastapi import APIRouter, Request, Response

from localmodel_router.deps import ServicesDep
from localmodel_router.disconnect import unless_disconnected
from localmodel_router.protocol.completions import CompletionRequest
from localmodel_router.routes.responses import json_body
from localmodel_router.streaming import sse_response

router = APIRouter()


@router.post("/v1/completions", response_model=None)
async def create_completion(body: CompletionRequest, request: Request, services: ServicesDep) -> Response:
    """Text completion (legacy API), streamed when `stream` is true."""
    request.state.model = body.model
    if body.stream:
        # Opening the stream waits for the first token: a client leaving meanwhile cancels it too.
        return sse_response(await unless_disconnected(request, services.completions.stream(body)))
    return json_body(await unless_disconnected(request, services.completions.complete(body)))
