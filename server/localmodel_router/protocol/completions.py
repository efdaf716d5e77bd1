"""POST /v1/completions (the legacy text completion API)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from localmodel_router.protocol.common import (
    INT32_MAX,
    MOST_CHOICES,
    FinishReason,
    GenerationRequest,
    TextsOrTokens,
    Usage,
)


class CompletionRequest(GenerationRequest):
    prompt: TextsOrTokens
    max_tokens: int | None = Field(default=16, ge=1, le=INT32_MAX)  # OpenAI's default for this API
    best_of: int | None = Field(default=None, ge=1, le=MOST_CHOICES)
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=5)
    suffix: str | None = None


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: FinishReason | None
    logprobs: None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
