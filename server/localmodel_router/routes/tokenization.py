from __future__ import annotations

from fastapi import APIRouter, Request, Response

from localmodel_router.deps import ServicesDep
from localmodel_router.protocol.tokenization import DetokenizeRequest, TokenizeRequest
from localmodel_router.routes.responses import json_body

router = APIRouter()


@router.post("/v1/tokenize", response_model=None)
async def tokenize(body: TokenizeRequest, request: Request, services: ServicesDep) -> Response:
    """The model's token ids for a text."""
    request.state.model = body.model
    return json_body(await services.tokenization.tokenize(body))


@router.post("/v1/detokenize", response_model=None)
async def detokenize(body: DetokenizeRequest, request: Request, services: ServicesDep) -> Response:
    """The text of token ids (ids outside the model's vocabulary: 400)."""
    request.state.model = body.model
    return json_body(await services.tokenization.detokenize(body))
