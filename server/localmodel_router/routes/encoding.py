from __future__ import annotations

from fastapi import APIRouter, Request, Response

from localmodel_router.deps import ServicesDep
from localmodel_router.protocol.embeddings import EmbeddingRequest
from localmodel_router.protocol.rerank import RerankRequest
from localmodel_router.protocol.tokenization import TokenizeRequest
from localmodel_router.routes.responses import json_body

router = APIRouter()


@router.post("/v1/embeddings", response_model=None)
async def create_embeddings(body: EmbeddingRequest, request: Request, services: ServicesDep) -> Response:
    """Embeddings of one or more inputs (strings or token arrays)."""
    request.state.model = body.model
    return json_body(await services.encoding.embed(body))


@router.post("/v1/rerank", response_model=None)
async def rerank(body: RerankRequest, request: Request, services: ServicesDep) -> Response:
    """Documents ordered by relevance to the query (Jina/Cohere shape)."""
    request.state.model = body.model
    return json_body(await services.encoding.rerank(body))


@router.post("/v1/tokenize", response_model=None)
async def tokenize(body: TokenizeRequest, request: Request, services: ServicesDep) -> Response:
    """The model's token ids for a text."""
    request.state.model = body.model
    return json_body(await services.encoding.tokenize(body))
