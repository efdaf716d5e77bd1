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
    TokenLogprob,
    Usage,
)


class CompletionRequest(GenerationRequest):
    prompt: TextsOrTokens
    max_tokens: int | None = Field(default=None, ge=1, le=INT32_MAX)  # unset: COMPLETION_DEFAULT_TOKENS
    best_of: int | None = Field(default=None, ge=1, le=MOST_CHOICES)
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=5)
    suffix: str | None = None


class CompletionLogprobs(BaseModel):
    """The completions API's shape: parallel lists, one entry per token."""

    tokens: list[str]
    token_logprobs: list[float | None]  # None for an echoed prompt's first token, as OpenAI sends it
    top_logprobs: list[dict[str, float | None] | None]
    text_offset: list[int]  # where each token starts in the choice's text

    @classmethod
    def of(cls, entries: list[TokenLogprob], offset: int = 0) -> CompletionLogprobs:
        """From chat-shaped entries; `offset`: where the first token starts (a stream's text so far)."""
        offsets = []
        for entry in entries:
            offsets.append(offset)
            offset += len(entry.token)
        return cls(
            tokens=[entry.token for entry in entries],
            token_logprobs=[entry.logprob for entry in entries],
            top_logprobs=[
                None if entry.logprob is None else {top.token: top.logprob for top in entry.top_logprobs}
                for entry in entries
            ],
            text_offset=offsets,
        )


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: FinishReason | None
    logprobs: CompletionLogprobs | None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
