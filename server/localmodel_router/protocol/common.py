"""Pieces shared by several endpoint families."""

from __future__ import annotations

import time
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class OpenAIRequest(BaseModel):
    # Newer SDKs send parameters this router does not know yet; ignoring them keeps old routers usable.
    model_config = ConfigDict(extra="ignore")


class StreamOptions(BaseModel):
    include_usage: bool = False


Temperature = Field(default=None, ge=0, le=2)
TopP = Field(default=None, ge=0, le=1)
Penalty = Field(default=None, ge=-2, le=2)


class GenerationRequest(OpenAIRequest):
    """The fields chat and text completions share."""

    model: str
    temperature: float | None = Temperature
    top_p: float | None = TopP
    seed: int | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = Penalty
    frequency_penalty: float | None = Penalty
    n: int = Field(default=1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None  # accepted and ignored


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int


def usage(prompt_tokens: int, completion_tokens: int = 0) -> Usage:
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]
