from __future__ import annotations

from fastapi import APIRouter, Request, Response

from localmodel_router.deps import ServicesDep
from localmodel_router.protocol.rerank import RerankRequest
from localmodel_router.routes.responses import json_body

router = APIRouter()


@router.post("/v1/rerank", response_model=None)
async def rerank(body: RerankRequest, request: Request, services: ServicesDep) -> Response:
    """Documents ordered by relevance to the query (Jina/Cohere shape)."""
    request.state.model = body.model
    return json_body(await services.rerank.rerank(body))
