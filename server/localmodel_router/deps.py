"""What routes depend on: the app's services, and the API-key check."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from localmodel_router.auth import ApiKeys
from localmodel_router.discovery import Discovery
from localmodel_router.load import ModelLoad
from localmodel_router.serving.audio import AudioService
from localmodel_router.serving.chat import ChatService
from localmodel_router.serving.completions import CompletionService
from localmodel_router.serving.embeddings import EmbeddingService
from localmodel_router.serving.messages import MessagesService
from localmodel_router.serving.rerank import RerankService
from localmodel_router.serving.responses import ResponsesService
from localmodel_router.serving.tokenization import TokenizationService
from localmodel_router.settings import RouterSettings


@dataclass
class Services:
    settings: RouterSettings
    discovery: Discovery
    api_keys: ApiKeys
    load: ModelLoad
    chat: ChatService
    completions: CompletionService
    embeddings: EmbeddingService
    messages: MessagesService
    rerank: RerankService
    responses: ResponsesService
    tokenization: TokenizationService
    audio: AudioService


# Dependencies are `async def` on purpose: FastAPI runs plain `def` dependencies in a thread pool, which
# costs more than a request's whole routing work.
async def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


async def require_api_key(request: Request) -> None:
    found: Services = request.app.state.services
    found.api_keys.check(request.headers.get("authorization"))


async def require_api_key_or_x_api_key(request: Request) -> None:
    """The check for Anthropic's Messages API, whose clients send the key as `x-api-key`."""
    found: Services = request.app.state.services
    found.api_keys.check(request.headers.get("authorization"), request.headers.get("x-api-key"))


ServicesDep = Annotated[Services, Depends(services)]
