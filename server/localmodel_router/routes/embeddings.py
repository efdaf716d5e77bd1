from __future__ import annotations

from fastapi import APIRouter, Request, Response

from localmodel_router.deps import ServicesDep
from localmodel_router.protocol.embeddings import EmbeddingRequest
from localmodel_router.routes.responses import json_body

router = APIRouter()


@router.post("/v1/embeddings", response_model=None)
async def create_embeddings(body: EmbeddingRequest, request: Request, services: ServicesDep) -> Response:
    """Embeddings of one or more inputs (strings or token arrays)."""
    request.state.model = body.model
    return json_body(await services.embeddings.embed(body))
