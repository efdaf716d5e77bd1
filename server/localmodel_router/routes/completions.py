from __future__ import annotations

from fastapi import APIRouter, Request, Response

from localmodel_router.deps import ServicesDep
from localmodel_router.disconnect import unless_disconnected
from localmodel_router.protocol.completions import CompletionRequest
from localmodel_router.routes.responses import json_body
from localmodel_router.streaming import open_sse

router = APIRouter()


@router.post("/v1/completions", response_model=None)
async def create_completion(body: CompletionRequest, request: Request, services: ServicesDep) -> Response:
    """Text completion (legacy API), streamed when `stream` is true."""
    request.state.model = body.model
    if body.stream:
        keepalive = services.settings.stream_keepalive_seconds
        return await open_sse(request, services.completions.stream(body), keepalive)
    return json_body(await unless_disconnected(request, services.completions.complete(body)))
