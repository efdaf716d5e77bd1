"""POST /v1/rerank, in the Jina/Cohere shape LocalAI serves."""

from __future__ import annotations

from pydantic import BaseModel, Field

from localmodel_router.protocol.common import INT32_MAX, OpenAIRequest


class RerankRequest(OpenAIRequest):
    model: str
    query: str
    documents: list[str] = Field(min_length=1)
    top_n: int | None = Field(default=None, ge=1, le=INT32_MAX)
    return_documents: bool = True


class RerankDocument(BaseModel):
    text: str


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: RerankDocument | None = None


class RerankUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class RerankResponse(BaseModel):
    model: str
    results: list[RerankResult]
    usage: RerankUsage
