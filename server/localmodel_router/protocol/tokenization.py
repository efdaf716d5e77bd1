"""POST /v1/tokenize (LocalAI's `content`, or vLLM's `prompt`)."""

from __future__ import annotations

from pydantic import BaseModel, model_validator

from localmodel_router.protocol.common import OpenAIRequest


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
