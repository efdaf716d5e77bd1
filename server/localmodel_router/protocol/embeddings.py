"""POST /v1/embeddings."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from localmodel_router.protocol.common import INT32_MAX, OpenAIRequest, TextsOrTokens, Usage


class EmbeddingRequest(OpenAIRequest):
    model: str
    input: TextsOrTokens
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1, le=INT32_MAX)
    user: str | None = None


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str  # str: base64 of little-endian float32, when asked for


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage
