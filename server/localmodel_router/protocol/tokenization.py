"""POST /v1/tokenize (LocalAI's `content`, or vLLM's `prompt`) and POST /v1/detokenize (llama.cpp's and
vLLM's `tokens` → `content`, or vLLM's `prompt`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, model_validator

from localmodel_router.protocol.common import INT32_MAX, OpenAIRequest

MOST_TOKENS = 1 << 20  # token ids in one detokenize request: far above any context


class TokenizeRequest(OpenAIRequest):
    model: str
    content: str | None = None
    prompt: str | None = None

    @model_validator(mode="after")
    def _text_given(self) -> TokenizeRequest:
        if self.content is None and self.prompt is None:
            raise ValueError("send the text to tokenize as `content` (or `prompt`)")
        return self

    @property
    def text(self) -> str:
        return self.content if self.content is not None else self.prompt or ""


class TokenizeResponse(BaseModel):
    tokens: list[int]
    count: int


class DetokenizeRequest(OpenAIRequest):
    model: str
    tokens: list[Annotated[int, Field(ge=0, le=INT32_MAX)]] = Field(max_length=MOST_TOKENS)


class DetokenizeResponse(BaseModel):
    content: str
    prompt: str  # the same text under vLLM's name
